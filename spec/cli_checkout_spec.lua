-- bin/tcp-port-used run from a checkout, with no LUA_PATH or LUA_CPATH:
-- it finds the checkout's lua/ and the core built for its interpreter,
-- and a core built for another Lua is named as such.
local H = require "helpers"
local lfs = require "lfs"

local RUNTIME = jit and "jit" or _VERSION:match("%d+%.%d+")
local CLEAN = "cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_" .. RUNTIME:gsub("%.", "_") ..
  " -u LUA_CPATH_" .. RUNTIME:gsub("%.", "_") .. " "

local function built(rt)
  return lfs.attributes(H.root .. "/build/" .. rt .. "/tcp_port_used/core.so") ~= nil
end

-- stderr into stdout; returns both and the exit status
local function cli(env, argstr)
  return H.run(CLEAN .. env .. H.lua_exec() .. " " .. H.quote(H.root .. "/bin/tcp-port-used") .. " " ..
    argstr .. " 2>&1")
end

describe("tcp-port-used from a checkout", function()
  it("finds the checkout's modules and build/<runtime>/ core from any directory", function()
    if not built(RUNTIME) then
      pending("build/" .. RUNTIME .. " is not built (make all)")
      return
    end
    local l = H.listen()
    local port = l.port
    local out, rc = cli("", "check 127.0.0.1:" .. port)
    l:close()
    assert.equals(0, rc, out)
    local free, frc = cli("", "check 127.0.0.1:" .. port)
    assert.equals(1, frc, free)
  end)

  it("says which Lua a core was built for when it is another one", function()
    -- 5.2 and 5.3 cores load on each other; 5.1 and 5.4 cores on nothing else
    local other = (RUNTIME == "5.4" or RUNTIME == "5.5") and "5.1" or "5.4"
    if not built(other) then
      pending("build/" .. other .. " is not built (make all)")
      return
    end
    local cpath = "LUA_CPATH=" .. H.quote(H.root .. "/build/" .. other .. "/?.so;;") .. " "
    local out, rc = cli(cpath, "check 1")
    assert.equals(2, rc, out)
    local running = jit and "LuaJIT" or _VERSION
    assert.matches("built for Lua " .. other .. ", running on " .. running .. ": run it with lua" .. other .. "\n",
      out, 1, true)
    assert.not_matches("undefined symbol", out, 1, true)
  end)
end)
