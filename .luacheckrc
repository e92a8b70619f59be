-- luacheck configuration for `make lint`
std = "luajit"
unused_args = false
max_line_length = 100
exclude_files = { "t/clients/node_modules" }
