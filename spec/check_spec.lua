local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

local has_ipv6 = core.ipv6()

describe("check", function()
  local l, r = H.each_listener_and_refused(before_each, after_each)

  it("reports a listening port as in use and a refused one as free", function()
    assert.is_true(tpu.check(l.port, "127.0.0.1"))
    assert.is_false(tpu.check(r.port, "127.0.0.1"))
  end)

  it("checks both loopbacks when host is omitted", function()
    assert.is_true(tpu.check(l.port))
    assert.is_false(tpu.check(r.port))
  end)

  it("takes an options table", function()
    assert.is_true(tpu.check { port = l.port, host = "127.0.0.1", timeout_ms = 500 })
    assert.is_false(tpu.check { port = r.port, mode = "connect" })
  end)

  it("tries every address of a name", function()
    assert.is_true(tpu.check(l.port, "localhost"))
    assert.is_false(tpu.check(r.port, "localhost"))
  end)

  describe("on IPv6", function()
    if not has_ipv6 then
      pending("this machine has no IPv6")
      return
    end
    it("answers for ::1 and [::1]", function()
      local l6 = H.listen("::1")
      local r6 = H.reserve("::1")
      assert.is_true(tpu.check(l6.port, "::1"))
      assert.is_true(tpu.check(l6.port, "[::1]"))
      assert.is_false(tpu.check(r6.port, "::1"))
      -- a server on ::1 only still counts when host is omitted
      assert.is_true(tpu.check(l6.port))
      l6.close()
      r6.close()
    end)
  end)

  it("reports a per-attempt timeout as an error, never as free", function()
    local b = H.full_backlog()
    local t0 = core.now()
    local ok, err, code = tpu.check { port = b.port, host = "127.0.0.1", timeout_ms = 200 }
    local took = core.now() - t0
    b.close()
    assert.is_nil(ok)
    assert.equals("ETIMEDOUT", code)
    assert.matches("connect 127.0.0.1:" .. b.port .. ": timed out", err, 1, true)
    assert.is_true(took >= 190 and took < 2000, "took " .. took .. " ms")
  end)

  it("reports a name that does not resolve as an error naming it", function()
    if not H.can_unshare() then
      pending("no network namespaces here (a lookup would leave the machine)")
      return
    end
    local out = H.lua_in_netns([[
      local tpu = require "tcp_port_used"
      print(tpu.check(80, "nonexistent.invalid"))]])
    assert.matches("^nil\tresolve nonexistent.invalid: [^\t]+\tEAI_%u+", out)
  end)

  describe("mode bind", function()
    it("is in use where a listener holds the port", function()
      assert.is_true(tpu.check { port = l.port, host = "127.0.0.1", mode = "bind" })
      assert.is_true(tpu.check { port = l.port, mode = "bind" })
    end)
    it("is free where nothing is bound", function()
      local p = H.free_port()
      assert.is_false(tpu.check { port = p, mode = "bind" })
    end)
    it("is in use where a socket without SO_REUSEADDR holds the port", function()
      assert.is_true(tpu.check { port = r.port, host = "127.0.0.1", mode = "bind" })
    end)
    it("reports an address of another machine as an error", function()
      -- (192.0.2.1 is TEST-NET-1, never an address of this machine)
      local port = H.free_port()
      local ok, err, code = tpu.check { port = port, host = "192.0.2.1", mode = "bind" }
      assert.is_nil(ok)
      assert.equals("EADDRNOTAVAIL", code)
      assert.matches("bind 192.0.2.1:" .. port, err, 1, true)
    end)
  end)

  describe("mode any", function()
    it("is in use if either probe says so", function()
      assert.is_true(tpu.check { port = l.port, mode = "any" })
      -- bound without listening: connect is refused, bind fails
      assert.is_true(tpu.check { port = r.port, host = "127.0.0.1", mode = "any" })
      assert.is_false(tpu.check { port = H.free_port(), mode = "any" })
    end)
  end)

  it("leaves no file descriptor behind", function()
    local b = H.full_backlog()
    local before = H.fd_count()
    for _ = 1, 200 do
      tpu.check(l.port)
      tpu.check(r.port)
      tpu.check { port = r.port, mode = "any" }
      l.drain()
    end
    tpu.check { port = b.port, host = "127.0.0.1", timeout_ms = 20 }
    assert.equals(before, H.fd_count())
    b.close()
  end)

  it("reports running out of file descriptors as an error, not free", function()
    local out, rc = H.run("ulimit -n 12; " .. H.lua_cmd(string.format([[
      local tpu = require "tcp_port_used"
      local hold = {}
      for i = 1, 20 do hold[i] = io.open("/dev/null") end
      print(tpu.check(%d, "127.0.0.1"))]], l.port)) .. " 2>&1")
    -- (on a failure, say what the shell said too)
    if rc ~= 0 then out = out .. H.run("ulimit -n 12 2>&1; echo ulimit: $?") end
    assert.equals(0, rc, out)
    assert.matches("^nil\tconnect 127.0.0.1:%d+: too many open files\tEMFILE", out)
  end)

  it("does not pile up TIME_WAIT entries at thousands of probes a second", function()
    -- In a child of its own, so that earlier specs' probes do not count
    -- towards the rate that decides how probes close.
    local out, rc = H.run(H.lua_cmd([[
      local tpu, H = require "tcp_port_used", require "helpers"
      local l = H.listen("127.0.0.1", 0, 1024)
      for _ = 1, 2000 do
        assert(tpu.check(l.port, "127.0.0.1") == true)
        l.drain()
      end
      print(H.time_wait_to(l.port))]]) .. " 2>&1")
    assert.equals(0, rc, out)
    local added = tonumber(out)
    assert.is_true(added >= 1, "the first probes close gracefully: " .. out)
    assert.is_true(added <= 250, added .. " TIME_WAIT entries after 2000 probes")
  end)

  -- The rate that turns graceful closes into resets is measured on a
  -- monotonic clock, never in CPU seconds: probes 20 ms apart (50 a
  -- second, sleeping in between) all close gracefully, in the core and in
  -- tcp_port_used.uv without the C core alike.
  for _, kind in ipairs { "core", "uv_nocore" } do
    it("measures the probe rate in real time, not CPU time (" .. kind .. ")", function()
      if kind == "uv_nocore" and select(2, H.run(H.lua_cmd("require 'luv'") .. " 2>&1")) ~= 0 then
        return pending("luv does not load on " .. H.lua)
      end
      local out, rc = H.run(H.lua_cmd(string.format([[
        if %q == "uv_nocore" then
          package.preload["tcp_port_used.core"] = function() error("no C core here") end
        end
        local tpu = %q == "core" and require "tcp_port_used" or require "tcp_port_used.uv"
        local H, socket = require "helpers", require "socket"
        local l = H.listen("127.0.0.1", 0, 1024)
        for _ = 1, 150 do
          assert(tpu.check(l.port, "127.0.0.1") == true)
          l.drain()
          socket.sleep(0.02)
        end
        print(H.time_wait_to(l.port))]], kind, kind)) .. " 2>&1")
      assert.equals(0, rc, out)
      local n = tonumber(out)
      assert(n and n >= 140, tostring(out) .. " TIME_WAIT entries after 150 probes 20 ms apart")
    end)
  end

  it("closes gracefully or with a reset when asked", function()
    -- A graceful close leaves the probe's side in TIME_WAIT once the
    -- server has closed its end; a reset leaves nothing.
    local function probe(close)
      assert.is_true(tpu.check { port = l.port, host = "127.0.0.1", close = close })
    end
    assert.equals(0, H.time_waits_left(l, 3, "reset", probe), "after 3 probes closed with a reset")
    assert.equals(3, H.time_waits_left(l, 3, "graceful", probe), "after 3 probes closed gracefully")
  end)
end)
