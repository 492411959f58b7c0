std = "max"
max_line_length = 120
-- the hosts' globals, read only where an adapter checks for them
read_globals = { "ngx", "vim" }
files["spec"] = { std = "+busted" }
exclude_files = { "build", ".luarocks", "luarocks-tree" }
