-- The release: the rockspecs list every Lua module there is, the
-- versioned rockspec differs from scm-1 only in its version and source,
-- and the version is the same in the rockspec, the core,
-- tcp_port_used.version and the CHANGELOG. (scripts/rock-check.sh packs
-- and installs it.)
local core = require "tcp_port_used.core"
local lfs = require "lfs"
local H = require "helpers"

local function read(path)
  return H.slurp(H.root .. "/" .. path)
end

-- A rockspec's fields, as LuaRocks reads them (a Lua file of assignments).
local function rockspec(path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(read(path), path)) -- luacheck: ignore 113
    setfenv(chunk, env)
  else
    chunk = assert(load(read(path), path, "t", env))
  end
  chunk()
  return env
end

-- Every .lua file below dir (relative to the root), by module name.
local function lua_modules(dir, prefix, out)
  out = out or {}
  for name in lfs.dir(H.root .. "/" .. dir) do
    local path = dir .. "/" .. name
    local mode = lfs.attributes(H.root .. "/" .. path, "mode")
    if mode == "directory" and name ~= "." and name ~= ".." then
      lua_modules(path, prefix .. name .. ".", out)
    elseif mode == "file" and name:match("%.lua$") then
      local m = name == "init.lua" and prefix:sub(1, -2) or prefix .. name:sub(1, -5)
      out[m] = path
    end
  end
  return out
end

local function rockspec_files()
  local files = {}
  for name in lfs.dir(H.root .. "/rockspec") do
    if name:match("%.rockspec$") then files[#files + 1] = "rockspec/" .. name end
  end
  table.sort(files)
  return files
end

describe("the rockspecs", function()
  local files = rockspec_files()

  it("are scm-1 and one versioned release", function()
    assert.equals(2, #files, table.concat(files, ", "))
    assert.matches("^rockspec/tcp%-port%-used%-%d+%.%d+%.%d+%-%d+%.rockspec$", files[1])
    assert.equals("rockspec/tcp-port-used-scm-1.rockspec", files[2])
  end)

  it("list every Lua module under lua/ and the two C modules, each from a file that exists", function()
    local want = lua_modules("lua/tcp_port_used", "tcp_port_used.")
    for _, file in ipairs(files) do
      local got = {}
      for m, src in pairs(rockspec(file).build.modules) do
        if type(src) == "string" then
          got[m] = src
        else
          for _, c in ipairs(src.sources) do
            assert.is_truthy(lfs.attributes(H.root .. "/" .. c), file .. ": " .. c)
          end
        end
      end
      assert.are.same(want, got, file)
      local b = rockspec(file).build.modules
      assert.are.same({ "csrc/core.c" }, b["tcp_port_used.core"].sources, file)
      assert.are.same({ "csrc/exec.c" }, b["tcp_port_used.exec"].sources, file)
    end
  end)

  it("are conventional rocks: any Lua from 5.1 on, `luarocks test` runs busted, labels and an issues URL", function()
    for _, file in ipairs(files) do
      local r = rockspec(file)
      assert.equals("3.0", r.rockspec_format, file)
      assert.are.same({ "lua >= 5.1" }, r.dependencies, file)
      assert.are.same({ type = "busted" }, r.test, file)
      assert.is_truthy(lfs.attributes(H.root .. "/.busted"), ".busted")
      assert.is_true(#r.description.labels > 0, file)
      local home = r.description.homepage
      assert.equals(r.source.url:match("^git%+(.-)%.git$"), home, file)
      assert.equals(home .. "/issues", r.description.issues_url, file)
    end
  end)

  it("differ only in version and source tag", function()
    local release, scm = rockspec(files[1]), rockspec(files[2])
    assert.equals("scm-1", scm.version)
    assert.is_nil(scm.source.tag)
    for _, key in ipairs { "rockspec_format", "package", "description", "dependencies",
                           "supported_platforms", "build", "test" } do
      assert.are.same(scm[key], release[key], key)
    end
    assert.equals(scm.source.url, release.source.url)
  end)

  it("name the version of the core, tcp_port_used.version and the CHANGELOG", function()
    local release = rockspec(files[1])
    local version = files[1]:match("tcp%-port%-used%-(%d+%.%d+%.%d+)%-%d+%.rockspec$")
    assert.equals(version .. "-" .. release.version:match("%-(%d+)$"), release.version)
    assert.equals("v" .. version, release.source.tag)
    assert.equals(version, core._VERSION)
    assert.equals(version, require("tcp_port_used")._VERSION)
    -- what the Lua code says without the core (the uv adapter, User-Agent)
    assert.equals(version, require "tcp_port_used.version")
    assert.matches("\n## %[" .. version:gsub("%.", "%%.") .. "%] %- %d%d%d%d%-%d%d%-%d%d\n",
      read("CHANGELOG.md"))
  end)

  it("support the systems the C core builds on, not Windows", function()
    for _, file in ipairs(files) do
      local p = rockspec(file).supported_platforms
      assert.are.same({ "linux", "macosx", "freebsd", "openbsd", "netbsd" }, p, file)
    end
  end)
end)
