-- UDP ports (proto = "udp"), as game servers hold them: real UDP sockets
-- bound by this process or a child, asked through the core module in
-- modes bind and listen (the latter by both of its backends).
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local socket = require "socket"
local H = require "helpers"

local has_ipv6 = core.ipv6()

local function udp_check(port, host, mode)
  return tpu.check { port = port, host = host, proto = "udp", mode = mode }
end

--- A UDP socket on 127.0.0.1 whose port nobody holds in TCP, kept so
-- while the spec runs (the suite's runs overlap, and another process's
-- connect may take any ephemeral port as its source): a TCP socket bound
-- there with SO_REUSEADDR and not listening keeps other connects and
-- binds off it, yet refuses connections, lets a bind probe (SO_REUSEADDR,
-- as servers set it) bind beside it, and is no listener.
local function udp_with_free_tcp_port()
  for _ = 1, 20 do
    local u, t = H.udp("127.0.0.1"), assert(socket.tcp4())
    assert(t:setoption("reuseaddr", true))
    if t:bind("127.0.0.1", u.port) then
      return u, t
    end
    t:close()
    u.close()
  end
  error("no UDP port whose TCP port is free in 20 tries")
end

-- Each way of asking, with the setup it needs: every one must give the
-- same answers for the same sockets.
local WAYS = { { name = "bind", mode = "bind" } }
for _, backend in ipairs(H.listen_backends) do
  WAYS[#WAYS + 1] = { name = "listen (" .. backend .. ")", mode = "listen", backend = backend }
end

for _, way in ipairs(WAYS) do
  describe("UDP, mode " .. way.name, function()
    if way.backend then
      setup(function() listen.backend(way.backend) end)
      teardown(function() listen.backend(false) end)
    end

    local function expect(want, port, host)
      local r, err = udp_check(port, host, way.mode)
      assert.are.equal(want, r, "host " .. tostring(host) .. ": " .. tostring(err))
    end

    it("sees a socket bound on 127.0.0.1, and not once it is closed", function()
      local u = H.udp("127.0.0.1")
      expect(true, u.port, nil)
      expect(true, u.port, "127.0.0.1")
      expect(true, u.port, "localhost")
      u.close()
      expect(false, u.port, nil)
      expect(false, u.port, "127.0.0.1")
    end)

    it("sees a holder that set SO_REUSEADDR or SO_REUSEPORT (the probe sets neither)", function()
      for _, opts in ipairs { { reuseaddr = true }, { reuseport = true },
                              { reuseaddr = true, reuseport = true } } do
        local u = H.udp("127.0.0.1", 0, opts)
        expect(true, u.port, nil)
        expect(true, u.port, "127.0.0.1")
        u.close()
      end
    end)

    -- The host table of docs/guide-game-servers.md ("UDP and game servers"): a socket bound on
    -- the first column, and the answer for each host; "*" in listen mode.
    local HOSTS = { "omitted", "127.0.0.1", "::1", "*" }
    local TABLE = {
      { "127.0.0.1", {}, { true, true, false, true } },
      { "::1", {}, { true, false, true, true } },
      { "0.0.0.0", {}, { true, true, false, true } },
      { "::", { v6only = false }, { true, true, true, true } },
      { "::", { v6only = true }, { true, false, true, true } },
      { "127.0.0.2", {}, { false, false, false, true } },
    }
    it("answers the host table: only the family and address asked", function()
      for _, row in ipairs(TABLE) do
        local bound, opts, want = row[1], row[2], row[3]
        if has_ipv6 or not bound:find(":", 1, true) then
          local u = H.udp(bound, 0, opts)
          for i, host in ipairs(HOSTS) do
            if (host ~= "::1" or has_ipv6) and (host ~= "*" or way.mode == "listen") then
              local r, err = udp_check(u.port, host ~= "omitted" and host or nil, way.mode)
              assert.are.equal(want[i], r, ("bound on %s%s, host %s: %s"):format(bound,
                opts.v6only == false and " (dual-stack)" or "", host, tostring(err)))
            end
          end
          u.close()
        end
      end
    end)

    it("takes 0.0.0.0 for the loopback of a wildcard socket", function()
      local u = H.udp("0.0.0.0")
      expect(true, u.port, "0.0.0.0")
      u.close()
    end)

    it("tells UDP from TCP: a TCP listener does not hold the UDP port, nor the reverse", function()
      local l = H.listen("127.0.0.1")
      if core.bind("127.0.0.1", l.port, "udp") == false then
        expect(false, l.port, "127.0.0.1")
      end
      l.close()
      local u, tcp = udp_with_free_tcp_port()
      assert.is_false(tpu.check(u.port, "127.0.0.1"))
      assert.is_false(tpu.check { port = u.port, host = "127.0.0.1", mode = way.mode })
      tcp:close()
      u.close()
    end)

    describe("on IPv6", function()
      if not has_ipv6 then
        pending("this machine has no IPv6")
        return
      end

      it("sees a socket on ::1, for ::1 and for the omitted host, not for 127.0.0.1", function()
        local u = H.udp("::1")
        expect(true, u.port, "::1")
        expect(true, u.port, "[::1]")
        expect(true, u.port, nil)
        expect(false, u.port, "127.0.0.1")
        u.close()
        expect(false, u.port, nil)
      end)
    end)

    it("waits for a socket a child binds 300 ms after the wait starts, then until it is gone", function()
      local port = H.free_udp_port()
      local pid = H.listen_later(port, 0.3, 0.5, "127.0.0.1", "udp")
      local t0 = core.now()
      local ok, err = tpu.wait_until_used { port = port, proto = "udp", mode = way.mode,
                                            timeout_ms = 10000 }
      local took = core.now() - t0
      assert.is_true(ok, err)
      assert.is_true(took >= 250, "saw it after " .. took .. " ms")
      ok, err = tpu.wait_until_free { port = port, proto = "udp", mode = way.mode,
                                      timeout_ms = 10000 }
      assert.is_true(ok, err)
      H.kill(pid)
    end)

    it("answers check_many for many ports", function()
      local a, b = H.udp("127.0.0.1"), H.udp("127.0.0.2")
      local free = H.free_udp_port()
      local ports = { a.port, b.port, free }
      local used, errs = tpu.check_many(ports, nil, { proto = "udp", mode = way.mode })
      assert.are.same({}, errs)
      assert.are.same({ [a.port] = true, [b.port] = false, [free] = false }, used)
      used = tpu.check_many(ports, "127.0.0.2", { proto = "udp", mode = way.mode })
      assert.are.same({ [a.port] = false, [b.port] = true, [free] = false }, used)
      a.close()
      b.close()
    end)

    it("leaves no descriptor behind", function()
      local u = H.udp("127.0.0.1")
      local free = H.free_udp_port()
      local n = way.backend == "proc" and 50 or 2000
      udp_check(u.port, nil, way.mode)
      local before = H.fd_count()
      for _ = 1, n do
        assert(udp_check(u.port, nil, way.mode) == true)
        assert(udp_check(free, "127.0.0.1", way.mode) == false)
      end
      tpu.check_many({ u.port, free }, nil, { proto = "udp", mode = way.mode })
      assert.are.equal(before, H.fd_count(), H.fd_list())
      u.close()
    end)
  end)
end

describe("UDP listen mode", function()
  if H.portable then pending(H.NO_LISTEN_MODE) return end
  it("with host '*' sees a socket on any local address", function()
    local u = H.udp("127.0.0.2")
    assert.is_false(udp_check(u.port, nil, "listen"))
    assert.is_true(udp_check(u.port, "*", "listen"))
    u.close()
    assert.is_false(udp_check(u.port, "*", "listen"))
  end)

  it("counts servers, not clients: a connected socket holds its port but hears only its peer", function()
    local server = H.udp("127.0.0.1")
    local client = H.udp("127.0.0.1", 0, { peer = { "127.0.0.1", server.port } })
    assert.is_false(udp_check(client.port, nil, "listen"))
    assert.is_false(udp_check(client.port, "*", "listen"))
    assert.is_true(udp_check(client.port, nil, "bind"))
    client.close()
    server.close()
  end)

  it("refuses a host that is not an address of this machine", function()
    local ok, err, code = udp_check(9, "192.0.2.1", "listen")
    assert.is_nil(ok)
    assert.matches("only for this machine", err)
    assert.are.equal("EADDRNOTAVAIL", code)
  end)

  it("chooses its backend per protocol", function()
    local u = H.udp("127.0.0.1")
    assert.is_true(udp_check(u.port, nil, "listen"))
    u.close()
    assert.are.equal(listen.backend(nil, "udp"), listen.backend(nil, "udp"))
    assert.truthy(listen.backend(nil, "udp"))
  end)
end)

describe("UDP bind mode is the default", function()
  it("when proto is udp and mode is omitted", function()
    local u = H.udp("127.0.0.1")
    -- a wait in connect mode could not see it; bind mode does
    assert.is_true(tpu.check { port = u.port, proto = "udp" })
    assert.is_true(tpu.wait_until_used { port = u.port, proto = "udp", timeout_ms = 1000 })
    local used = tpu.check_many({ u.port }, "127.0.0.1", { proto = "udp" })
    assert.are.same({ [u.port] = true }, used)
    u.close()
    assert.is_false(tpu.check { port = u.port, proto = "udp" })
  end)
end)

describe("find_free{ proto = 'udp' }", function()
  -- Whether a UDP server could bind port now on host (nil: 0.0.0.0 and
  -- a dual-stack ::, every local address).
  local function udp_bindable(port, host)
    if host then
      local s = host:find(":", 1, true) and socket.udp6() or socket.udp()
      local ok = s:setsockname(host, port)
      s:close()
      return ok == 1
    end
    local s4 = socket.udp()
    local ok = s4:setsockname("0.0.0.0", port) == 1
    s4:close()
    if ok and has_ipv6 then
      local s6 = socket.udp6()
      s6:setoption("ipv6-v6only", true)
      ok = s6:setsockname("::", port) == 1
      s6:close()
    end
    return ok
  end

  it("returns a port that a UDP bind then gets, on every address or the one asked", function()
    for _ = 1, 20 do
      local p = assert(tpu.find_free { proto = "udp" })
      assert.is_true(udp_bindable(p), "port " .. p)
      local p4 = assert(tpu.find_free { proto = "udp", host = "127.0.0.1" })
      assert.is_true(udp_bindable(p4, "127.0.0.1"), "port " .. p4)
    end
  end)

  it("skips a port a UDP socket holds, even one on a single address", function()
    local u = H.udp("127.0.0.2")
    assert.is_nil(tpu.find_free { proto = "udp", from = u.port, to = u.port })
    local p, err, code = tpu.find_free { proto = "udp", host = "127.0.0.2", from = u.port, to = u.port }
    assert.is_nil(p)
    assert.equals("bind 127.0.0.2: no free port in " .. u.port .. ".." .. u.port, err)
    assert.equals("EADDRINUSE", code)
    u.close()
    assert.equals(u.port, tpu.find_free { proto = "udp", from = u.port, to = u.port })
  end)

  it("asks about UDP only: a TCP listener's port can be free for UDP", function()
    local l = H.listen("127.0.0.1")
    if core.bind("127.0.0.1", l.port, "udp") == false then
      assert.equals(l.port, tpu.find_free { proto = "udp", host = "127.0.0.1", from = l.port, to = l.port })
    end
    assert.is_nil(tpu.find_free { host = "127.0.0.1", from = l.port, to = l.port })
    l.close()
  end)

  it("asks the kernel for a port free of UDP sockets, whatever TCP holds", function()
    if not H.can_unshare() then
      pending("needs unshare -n, to narrow the ephemeral range in a namespace of its own")
      return
    end
    -- Two ephemeral ports in a namespace of its own (fixed ports are safe
    -- there): UDP holds the first, TCP the second, so the only port free
    -- of UDP sockets is the second, and the only one free of TCP the first.
    local out = H.lua_in_netns([[
      local tpu, H = require "tcp_port_used", require "helpers"
      local u, l = H.udp("0.0.0.0", 40000), H.listen("0.0.0.0", 40001)
      local udp, tcp = {}, {}
      for i = 1, 20 do
        udp[i] = tostring(tpu.find_free { proto = "udp" })
        tcp[i] = tostring(tpu.find_free())
      end
      print(table.concat(udp, " "))
      print(table.concat(tcp, " "))]],
      "echo '40000 40001' > /proc/sys/net/ipv4/ip_local_port_range; ")
    local udp, tcp = out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.are.equal(("40001 "):rep(19) .. "40001", udp, out)
    assert.are.equal(("40000 "):rep(19) .. "40000", tcp, out)
  end)

  it("leaves no descriptor behind", function()
    local before = H.fd_count()
    local from = math.min(H.free_udp_port(), 65525)
    for _ = 1, 50 do
      tpu.find_free { proto = "udp" }
      tpu.find_free { proto = "udp", host = "localhost" }
      tpu.find_free { proto = "udp", from = from, to = from + 10 }
    end
    assert.equals(before, H.fd_count())
  end)
end)
