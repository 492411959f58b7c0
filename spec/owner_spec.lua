local tpu = require "tcp_port_used"
local listen = require "tcp_port_used.listen"
local H = require "helpers"
local R = require "readable"

local child_listener = H.child_listener
local has_ipv6 = require("tcp_port_used.core").ipv6()

for _, backend in ipairs(H.listen_backends) do
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
      assert.are.equal("tcp", h.proto)
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

    it("names the process that holds a UDP port, in the options form", function()
      local pid, port, stop = child_listener("127.0.0.1", "udp")
      local h = assert(tpu.owner { port = port, proto = "udp" })[1]
      assert.are.same({ pid, "127.0.0.1", port, "udp" }, { h.pid, h.address, h.port, h.proto })
      assert.are.equal(H.lua, h.command:match("^(%S+)"))
      assert.are.equal(port .. "/udp on 127.0.0.1 is held by pid " .. pid .. " (" .. h.command .. ")",
        listen.describe(h))
      assert.are.equal(pid, tpu.owner { port = port, host = "127.0.0.1", proto = "udp" }[1].pid)
      assert.are.same({}, tpu.owner { port = port, host = "127.0.0.2", proto = "udp" })
      -- the TCP port of the same number is another port
      assert.are.same({}, tpu.owner(port))
      stop()
      assert.is_true(tpu.wait_until_free { port = port, proto = "udp", mode = "listen",
                                           timeout_ms = 10000 })
      assert.are.same({}, tpu.owner { port = port, proto = "udp" })
    end)

    it("lists a dual-stack UDP socket for the loopback of either family", function()
      if not has_ipv6 then
        pending("this machine has no IPv6")
        return
      end
      local u = H.udp("::", 0, { v6only = false })
      for _, host in ipairs { "127.0.0.1", "::1" } do
        local holders = assert(tpu.owner { port = u.port, proto = "udp", host = host })
        assert.are.equal(1, #holders, host)
        assert.are.same({ "::", H.pid() }, { holders[1].address, holders[1].pid })
      end
      u.close()
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
  if H.portable then pending(H.NO_LISTEN_MODE) return end
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
    -- nobody reads the module from a copy: the checkout may be closed to it
    local dir = H.run("mktemp -d /tmp/tpu-owner.XXXXXX"):gsub("%s+$", "")
    local out, status = H.run("cd / && runuser -u nobody -- " .. H.lua_cmd(code, R.tree(dir)) .. " 2>&1")
    H.run("rm -rf " .. H.quote(dir))
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

  it("takes an options table, and raises its errors at the caller", function()
    if not H.portable then
      local l = H.listen("127.0.0.1")
      assert.are.equal(H.pid(), assert(tpu.owner { port = l.port, host = "127.0.0.1" })[1].pid)
      assert.are.equal("tcp", tpu.owner { port = l.port, proto = "tcp" }[1].proto)
      l.close()
    end
    for _, bad in ipairs { { port = 0 }, { port = 80, proto = "sctp" }, { port = 80, pid = 1 } } do
      local ok, err = pcall(function()
        local r = tpu.owner(bad) -- (not a tail call, so that the caller is this file)
        return r
      end)
      assert.is_false(ok)
      assert.matches("owner_spec.lua:%d+: bad argument #1 to 'owner'", err)
    end
  end)
end)
