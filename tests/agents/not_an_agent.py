thing = 42
