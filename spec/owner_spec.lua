local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local H = require "helpers"

-- A child process on this runtime that listens on a port of its own
-- choosing and reports "pid port" in a file; returns pid and port.
local function child_listener(host)
  local file = os.tmpname()
  local code = string.format([[
    local H = require 'helpers'
    local l = H.listen(%q)
    local f = io.open(%q, 'w'); f:write(H.pid(), ' ', l.port, '\n'); f:close()
    require('socket').sleep(30)]], host or "127.0.0.1", file)
  local spawned = H.spawn(H.lua_cmd(code))
  local deadline = core.now() + 10000
  local pid, port
  repeat
    local f = io.open(file)
    if f then
      pid, port = f:read("*n", "*n")
      f:close()
    end
    if not port then core.sleep(10) end
  until port or core.now() > deadline
  os.remove(file)
  assert(port, "the child did not start listening")
  return pid, port, function()
    H.kill(pid)
    H.kill(spawned)
  end
end

for _, backend in ipairs { "netlink", "proc" } do
  describe("owner (" .. backend .. ")", function()
    setup(function() listen.backend(backend) end)
    teardown(function() listen.backend(false) end)

    it("names the process that listens, by pid and command", function()
      local pid, port, stop = child_listener()
      local holders = assert(tpu.owner(port))
      assert.are.equal(1, #holders)
      local h = holders[1]
      assert.are.equal(pid, h.pid)
      assert.are.equal(H.lua, h.command:match("^(%S+)"))
      assert.are.equal("127.0.0.1", h.address)
      assert.are.equal(port, h.port)
      assert.is_number(h.inode)
      assert.is_number(h.uid)
      assert.are.same({ pid }, h.pids)
      assert.are.equal(port .. " on 127.0.0.1 is held by pid " .. pid .. " (" .. h.command .. ")",
        listen.describe(h))
      -- the loopback and the address itself see it; 127.0.0.2 does not
      assert.are.equal(pid, tpu.owner(port, "127.0.0.1")[1].pid)
      assert.are.same({}, tpu.owner(port, "127.0.0.2"))
      stop()
      assert.is_true(tpu.wait_until_free { port = port, mode = "listen", timeout_ms = 10000 })
      assert.are.same({}, tpu.owner(port))
    end)

    it("lists one entry per listening socket", function()
      local a = H.listen("127.0.0.1")
      local b = H.listen("127.0.0.2", a.port)
      local holders = assert(tpu.owner(a.port))
      assert.are.equal(2, #holders)
      for _, h in ipairs(holders) do assert.are.equal(H.pid(), h.pid) end
      a.close()
      b.close()
    end)

    it("refuses a host that is not this machine's", function()
      local ok, err = tpu.owner(80, "192.0.2.1")
      assert.is_nil(ok)
      assert.matches("only for this machine", err)
    end)
  end)
end

describe("owner of another user's socket", function()
  local _, rc = H.run("[ \"$(id -u)\" = 0 ] && command -v runuser >/dev/null")
  if rc ~= 0 then
    pending("needs root and runuser, to look as another user")
    return
  end
  it("leaves pid and command nil and says why", function()
    -- held by a sibling process, so that the one looking does not inherit it
    local _, port, stop = child_listener()
    local code = string.format([[
      local h = require('tcp_port_used').owner(%d)[1]
      io.write(tostring(h.pid), '|', tostring(h.command), '|', tostring(h.reason), '|', h.uid)]], port)
    local out, status = H.run("runuser -u nobody -- " .. H.lua_cmd(code) .. " 2>&1")
    stop()
    assert.are.equal(0, status, out)
    local pid, cmd, reason, uid = out:match("^(.-)|(.-)|(.-)|(.*)$")
    assert.are.equal("nil", pid)
    assert.are.equal("nil", cmd)
    assert.matches("may not inspect", reason)
    assert.are.equal("0", uid)
    assert.matches("is held by uid 0 %(pid unknown: held by a process", listen.describe {
      port = port, address = "127.0.0.1", uid = 0, reason = reason })
  end)
end)

describe("owner's arguments", function()
  it("raises for a bad port or host", function()
    assert.has_error(function() tpu.owner(0) end,
      "bad argument #1 to 'owner' (port must be an integer in 1..65535, got 0)")
    assert.has_error(function() tpu.owner(80, 5) end,
      "bad argument #2 to 'owner' (host must be a string or nil, got 5)")
  end)
end)
