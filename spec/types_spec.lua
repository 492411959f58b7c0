-- types/ (LuaLS definitions, generated from lua/tcp_port_used/api.lua by
-- `make docs`) keeps up with the code: every public function of each
-- module table has an entry in its types file, and every entry names a
-- function that exists, but for those api.lua declares as planned (the
-- work of another issue, not merged yet). The modules are loaded for real
-- and their tables enumerated; the adapters where their runtime is (nginx
-- for tcp_port_used.ngx).
local H = require "helpers"
local api = require "tcp_port_used.api"

local load_string = loadstring or load -- luacheck: ignore 113

local slurp = H.slurp

-- The functions typed for the module of path: its own (function M.x) and
-- those of the classes its class inherits (`---@class tcp_port_used.uv:
-- tcp_port_used.probing, ...`), which types/tcp_port_used.lua defines.
local function typed_names(path)
  local src = slurp(path)
  local names = {}
  for name in src:gmatch("\nfunction M%.([%w_]+)%(") do names[name] = true end
  local parents = src:match("\n%-%-%-@class [%w_.]+: ([^\n]+)")
  if parents then
    local main = slurp(H.root .. "/types/tcp_port_used.lua")
    for parent in parents:gmatch("[%w_.]+") do
      local var = main:match("\n%-%-%-@class " .. parent:gsub("%.", "%%.") .. "\nlocal ([%w_]+) = {}\n")
      assert(var, "types/tcp_port_used.lua defines no class " .. parent)
      for name in main:gmatch("\nfunction " .. var .. "%.([%w_]+)%(") do names[name] = true end
    end
  end
  return names
end

local function public_functions(mod)
  local names = {}
  for k, v in pairs(mod) do
    if type(v) == "function" and not tostring(k):match("^_") then names[k] = true end
  end
  return names
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- The functions api.lua declares for the module of types file path that
-- another issue adds.
local function planned(path)
  local set = {}
  for _, mod in ipairs(api.modules) do
    if mod.file == path then
      for _, f in ipairs(mod.funcs) do
        if f.planned then set[f.name] = true end
      end
    end
  end
  return set
end

local function compare(names, path)
  local typed = typed_names(H.root .. "/" .. path)
  local untyped, missing, later = {}, {}, planned(path)
  for k in pairs(names) do if not typed[k] then untyped[#untyped + 1] = k end end
  for k in pairs(typed) do if not names[k] and not later[k] then missing[#missing + 1] = k end end
  table.sort(untyped)
  table.sort(missing)
  assert.same({}, untyped, "public functions without an entry in " .. path)
  assert.same({}, missing, "entries in " .. path .. " for functions the module lacks")
end

--- The function names of tcp_port_used.ngx, read inside a real nginx
-- (the module refuses to load anywhere else): init_by_lua writes them to
-- a file and ends the process.
local function ngx_names()
  local nginx = "/usr/sbin/nginx"
  local mods = { "/usr/lib/nginx/modules/ndk_http_module.so",
                 "/usr/lib/nginx/modules/ngx_http_lua_module.so" }
  for _, p in ipairs { nginx, mods[1], mods[2], H.root .. "/build/jit/tcp_port_used/core.so" } do
    local f = io.open(p)
    if not f then return nil, p .. " is missing" end
    f:close()
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. H.quote(dir .. "/logs")))
  local conf = io.open(dir .. "/nginx.conf", "w")
  conf:write(string.format([[
load_module %s;
load_module %s;
error_log stderr;
pid %s/nginx.pid;
daemon off;
master_process off;
events {}
http {
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/jit/?.so;;";
  init_by_lua_block {
    local m = require "tcp_port_used.ngx"
    local f = assert(io.open("%s/names", "w"))
    for k, v in pairs(m) do
      if type(v) == "function" and not tostring(k):match("^_") then f:write(k, "\n") end
    end
    f:close()
    os.exit(0)
  }
}
]], mods[1], mods[2], dir, H.root, H.root, H.root, dir))
  conf:close()
  local out = H.run(nginx .. " -p " .. H.quote(dir) .. " -c " .. H.quote(dir .. "/nginx.conf") ..
    " 2>&1")
  local f = io.open(dir .. "/names")
  local names
  if f then
    names = {}
    for line in f:lines() do names[line] = true end
    f:close()
  end
  os.execute("rm -rf " .. H.quote(dir))
  if not names then error("nginx did not list tcp_port_used.ngx: " .. out) end
  return names
end

describe("types/", function()
  it("types every public function of tcp_port_used", function()
    compare(public_functions(require "tcp_port_used"), "types/tcp_port_used.lua")
  end)

  it("types every public function of tcp_port_used.uv", function()
    local ok, mod = pcall(require, "tcp_port_used.uv")
    if not ok then
      pending("tcp_port_used.uv does not load here: " .. tostring(mod):sub(1, 200))
      return
    end
    compare(public_functions(mod), "types/tcp_port_used/uv.lua")
  end)

  it("types every public function of tcp_port_used.ngx", function()
    local names, why = ngx_names()
    if not names then
      pending("no nginx with lua-nginx-module here: " .. why)
      return
    end
    compare(names, "types/tcp_port_used/ngx.lua")
  end)

  it("notices a function without an entry, and an entry without a function", function()
    local names = public_functions(require "tcp_port_used")
    names.not_typed_anywhere = true
    assert.has_error(function() compare(names, "types/tcp_port_used.lua") end)
    names.not_typed_anywhere, names.check = nil, nil
    assert.has_error(function() compare(names, "types/tcp_port_used.lua") end)
  end)

  it("are meta files that load as Lua", function()
    for _, path in ipairs { "types/tcp_port_used.lua", "types/tcp_port_used/ngx.lua",
                            "types/tcp_port_used/uv.lua" } do
      local src = slurp(H.root .. "/" .. path)
      assert.matches("^%-%-%-@meta ", src)
      assert.is_function(assert(load_string(src, "@" .. path)))
    end
  end)

  -- Each options table of args.OPTIONS is a class of types/tcp_port_used.lua
  -- whose fields are exactly its keys (whole names: `port` is not typed
  -- by `ports`).
  local CLASSES = {}
  for set, decl in pairs(api.options) do CLASSES[set] = decl.class end

  local function class_fields(src)
    local classes, current = {}, nil
    for line in (src .. "\n"):gmatch("(.-)\n") do
      local class = line:match("^%-%-%-@class ([%w_.]+)")
      local field = line:match("^%-%-%-@field ([%w_]+)%??%s")
      if class then
        current = {}
        classes[class] = current
      elseif field and current then
        current[field] = true
      elseif not line:match("^%-%-%-") then
        current = nil
      end
    end
    return classes
  end

  it("type the option keys the code accepts, each in its class", function()
    local options = require("tcp_port_used.args").OPTIONS
    local classes = class_fields(slurp(H.root .. "/types/tcp_port_used.lua"))
    for name in pairs(options) do
      assert.is_string(CLASSES[name], "options of " .. name .. " have no class in types/")
    end
    for name, class in pairs(CLASSES) do
      assert.is_table(options[name], "args.OPTIONS has no " .. name)
      assert.is_table(classes[class], "types/tcp_port_used.lua has no class " .. class)
      assert.same(sorted(options[name]), sorted(classes[class]), class .. " against args.OPTIONS." .. name)
    end
  end)

  it("read a class's fields as whole names", function()
    local classes = class_fields("---@class a\n---@field ports? integer[]\n---@field host string x\n" ..
      "local x\n---@field port integer\n")
    assert.same({ "host", "ports" }, sorted(classes.a))
  end)
end)
