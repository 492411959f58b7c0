--- A list of values as a table and back, nils and all: Lua 5.1 and
-- LuaJIT have no table.pack, and name unpack differently.
local M = {}

M.unpack = table.unpack or unpack -- luacheck: ignore 143

function M.pack(...)
  return { n = select("#", ...), ... }
end

return M
