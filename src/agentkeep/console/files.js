// A session's files on its run's page: GET /v1/sessions/{id}/files, each with a download link.
// A download is fetched with the tab's key (an <a href> cannot send Authorization) and saved from a
// blob URL; the server sends it as an attachment with a sandboxing CSP, so nothing in it can run here.

import { download, api } from "./api.js";
import { h, when } from "./dom.js";

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}

function fileLink(base, file, params, report) {
  const name = file.path.split("/").pop() || "file";
  const link = h("a", { href: "#", class: "mono download", "data-path": file.path, title: `Download ${file.path}` }, file.path);
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      const encoded = file.path.split("/").map(encodeURIComponent).join("/");
      const blob = await download(`${base}/${encoded}`, params);
      const url = URL.createObjectURL(blob);
      const save = h("a", { href: url, download: name, hidden: true });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) {
      report(error);
    }
  });
  return link;
}

/** The files of `sessionId` (an admin passes `owner` for another user's session), with a refresh button. */
export function sessionFiles(sessionId, owner, report) {
  const base = `/v1/sessions/${encodeURIComponent(sessionId)}/files`;
  const params = owner ? { user_id: owner } : undefined;
  const list = h("div", { id: "session-files" }, h("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    try {
      const { files } = await api(base, { params });
      list.replaceChildren(files.length
        ? h("table", { class: "files-table" },
          h("thead", null, h("tr", null, h("th", null, "File"), h("th", { class: "num" }, "Size"), h("th", null, "Modified"))),
          h("tbody", null, ...files.map((file) => h("tr", { class: "file-row" },
            h("td", null, fileLink(base, file, params, report)),
            h("td", { class: "num" }, bytes(file.size)),
            h("td", null, when(file.modified_at))))))
        : h("p", { class: "muted" }, "No files."));
    } catch (error) {
      list.replaceChildren(h("p", { class: "muted" }, `Files unavailable: ${error.message}`));
    }
  };
  const refresh = h("button", { type: "button", class: "ghost small", id: "refresh-files", onclick: load }, "Refresh");
  load();
  return { element: h("div", null, h("div", { class: "heading" }, h("h2", null, "Files"), refresh), list), load };
}
