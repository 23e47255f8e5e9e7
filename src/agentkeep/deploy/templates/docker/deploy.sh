#!/usr/bin/env bash
# Build {{name}}'s image, tag it, push it to $REGISTRY, roll it out.
# Written by `agentkeep init` (agentkeep {{version}}); edit freely.
#
# Usage: REGISTRY=registry.example.com/team ./deploy.sh [--dry-run] [--tag TAG] push|compose|k8s
#
#   push      build, tag and push only
#   compose   then, over SSH on $DEPLOY_HOST (user@host), in $DEPLOY_DIR (default /opt/{{name}}):
#             copy compose.yaml, pull the new image, `docker compose up -d --wait`
#             ($COMPOSE_PROFILE selects embedded or fleet; default embedded)
#   k8s       then `kubectl set image` on both Deployments and wait for `rollout status`
#             ($KUBE_NAMESPACE, default: the context's namespace)
#
#   --tag TAG names the image's tag; default: the git short SHA (with -dirty when tracked files
#             changed), or the UTC time (20260101-120000) outside a git repository.
#   --dry-run prints every command instead of running it.
#   CONTAINER_ENGINE=podman uses podman instead of docker to build and push.
set -euo pipefail

NAME="{{name}}"
DRY_RUN=0

# The header comment above is the help text.
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
}

# Print a command, quoted so it can be pasted back into a shell, then run it unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ "${DRY_RUN}" -eq 0 ]]; then
        "$@"
    fi
}

MODE=""
TAG=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --tag)
            [[ $# -ge 2 && -n "$2" ]] || { echo "deploy.sh: --tag needs a value" >&2; usage; }
            TAG="$2"
            shift
            ;;
        --tag=*) TAG="${1#--tag=}" ;;
        -h | --help) usage ;;
        push | compose | k8s) MODE="$1" ;;
        *) echo "deploy.sh: unknown argument: $1" >&2; usage ;;
    esac
    shift
done
[[ -n "${MODE}" ]] || usage
: "${REGISTRY:?set REGISTRY, e.g. REGISTRY=registry.example.com/team}"

ENGINE="${CONTAINER_ENGINE:-docker}"
if [[ -z "${TAG}" ]]; then
    if TAG="$(git rev-parse --short HEAD 2>/dev/null)"; then
        CHANGES="$(git status --porcelain --untracked-files=no)"
        if [[ -n "${CHANGES}" ]]; then
            TAG="${TAG}-dirty"  # an image always says which code it holds
        fi
    else
        TAG="$(date -u +%Y%m%d-%H%M%S)"  # not a git repository (or no commit yet): when it was built
    fi
fi
IMAGE="${REGISTRY%/}/${NAME}:${TAG}"

run "${ENGINE}" build --tag "${IMAGE}" .
run "${ENGINE}" push "${IMAGE}"

case "${MODE}" in
    compose)
        : "${DEPLOY_HOST:?set DEPLOY_HOST=user@host for a Compose rollout}"
        DIR="${DEPLOY_DIR:-/opt/${NAME}}"
        PROFILE="${COMPOSE_PROFILE:-embedded}"
        run ssh "${DEPLOY_HOST}" "mkdir -p '${DIR}'"
        run scp compose.yaml "${DEPLOY_HOST}:${DIR}/compose.yaml"
        run ssh "${DEPLOY_HOST}" "cd '${DIR}' && AGENTKEEP_IMAGE='${IMAGE}' docker compose --profile '${PROFILE}' pull --quiet"
        run ssh "${DEPLOY_HOST}" "cd '${DIR}' && AGENTKEEP_IMAGE='${IMAGE}' docker compose --profile '${PROFILE}' up -d --no-build --wait"
        ;;
    k8s)
        KUBECTL=(kubectl)
        if [[ -n "${KUBE_NAMESPACE:-}" ]]; then
            KUBECTL+=(--namespace "${KUBE_NAMESPACE}")
        fi
        run "${KUBECTL[@]}" set image "deployment/${NAME}" "agentkeep=${IMAGE}"
        run "${KUBECTL[@]}" set image "deployment/${NAME}-worker" "agentkeep=${IMAGE}"
        run "${KUBECTL[@]}" rollout status "deployment/${NAME}" --timeout=5m
        run "${KUBECTL[@]}" rollout status "deployment/${NAME}-worker" --timeout=5m
        ;;
    *) ;;  # push: done above
esac
if [[ "${DRY_RUN}" -eq 1 ]]; then
    echo "dry run: nothing was built, pushed or rolled out (would be ${IMAGE})"
elif [[ "${MODE}" == push ]]; then
    echo "pushed ${IMAGE}"
else
    echo "deployed ${IMAGE}"
fi
