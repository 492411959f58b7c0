-- tcp_port_used.uv on plain luv: real luv handles and real sockets; the
-- loop is run by the spec, as a luv program runs it.
local H = require "helpers"

-- through the adapter first: it keeps luv alive across spec files
local has_luv = pcall(require, "tcp_port_used.uv")
local uv = has_luv and require "luv"

describe("tcp_port_used.uv on luv", function()
  if not has_luv then
    pending("luv is not installed for this runtime")
    return
  end
  local ad = require "tcp_port_used.uv"
  local now = function() return uv.hrtime() / 1e6 end

  -- Runs the loop until cond() holds or ms pass; a guard timer keeps
  -- uv.run "once" from waiting forever.
  local function run_until(cond, ms)
    local expired = false
    local guard = uv.new_timer()
    guard:start(ms or 5000, 0, function() expired = true end)
    while not cond() and not expired do uv.run("once") end
    guard:close()
    uv.run("nowait")
    return cond()
  end

  -- A luv server that accepts and closes.
  local function serve(s)
    assert(s:listen(64, function()
      local c = uv.new_tcp()
      s:accept(c)
      c:close()
    end))
  end

  -- A port bound but not listening (refused) that a timer turns into a
  -- listener after ms: the server that starts later.
  local function listen_later(ms)
    local s = uv.new_tcp()
    assert(s:bind("127.0.0.1", 0))
    local t = uv.new_timer()
    uv.update_time() -- timers count from the loop's cached time, stale between specs
    t:start(ms, 0, function()
      t:close()
      serve(s)
    end)
    return s:getsockname().port, function()
      if not t:is_closing() then t:close() end
      s:close()
    end
  end

  -- A repeating timer: the proof that the loop keeps running.
  local function ticker()
    local k = { n = 0 }
    local t = uv.new_timer()
    t:start(5, 5, function() k.n = k.n + 1 end)
    k.stop = function() t:close() end
    return k
  end

  after_each(function()
    uv.run("nowait") -- lets closed handles finish closing
  end)

  describe("callback form", function()
    it("sees a port that opens later while the loop keeps ticking", function()
      local port, close = listen_later(300)
      local tick = ticker()
      local calls, got, at = 0, nil, nil
      local t0 = now()
      ad.on_used(port, { timeout_ms = 5000 }, function(ok, err)
        calls, got, at = calls + 1, { ok, err }, now() - t0
      end)
      assert.equals(0, calls)
      assert.is_true(run_until(function() return calls > 0 end, 10000))
      local ticks = tick.n
      -- the callback runs once: more loop time brings no second call
      local t = uv.new_timer()
      local done = false
      t:start(100, 0, function() t:close(); done = true end)
      run_until(function() return done end)
      tick.stop()
      close()
      assert.equals(1, calls)
      assert.same({ true, nil }, got)
      assert.is_true(at >= 290 and at < 3000, "answered after " .. at .. " ms")
      -- 5 ms ticks over at least 290 ms; a blocked loop would show ~0
      assert.is_true(ticks >= 20, "only " .. ticks .. " ticks during the wait")
    end)

    it("never calls back before on_used returns, even when the answer is immediate", function()
      local s = uv.new_tcp()
      assert(s:bind("127.0.0.1", 0))
      serve(s)
      local port = s:getsockname().port
      -- a bind probe of a literal address answers without waiting at all
      local got, got_bind
      ad.on_used({ port = port }, function(ok) got = ok end)
      ad.on_used(port, { host = "127.0.0.1", mode = "bind" }, function(ok) got_bind = ok end)
      assert.is_nil(got)
      assert.is_nil(got_bind)
      assert.is_true(run_until(function() return got ~= nil and got_bind ~= nil end))
      assert.is_true(got_bind)
      s:close()
    end)

    it("reports a timeout with the wait's values", function()
      local r = H.reserve()
      local got, t0 = nil, now()
      ad.on_used(r.port, { timeout_ms = 300, retry_ms = 50 }, function(...) got = { n = select("#", ...), ... } end)
      assert.is_true(run_until(function() return got ~= nil end))
      local took = now() - t0
      r.close()
      assert.is_nil(got[1])
      assert.equals("ETIMEDOUT", got[3])
      assert.matches(": " .. got[4].text, got[2], 1, true)
      assert.is_true(took >= 290 and took < 2000, "took " .. took .. " ms")
    end)

    it("on_free sees a refused port at once", function()
      local r = H.reserve()
      local got
      ad.on_free(r.port, nil, function(ok, err) got = { ok, err } end)
      assert.is_true(run_until(function() return got ~= nil end))
      r.close()
      assert.same({ true, nil }, got)
    end)
  end)

  describe("awaitable form", function()
    it("suspends the coroutine and is resumed by the loop with the core's values", function()
      local port, close = listen_later(200)
      local tick = ticker()
      local res
      local co = coroutine.create(function()
        local a = { ad.wait_until_used { port = port, timeout_ms = 5000 } }
        local b = { ad.check(port) }
        local c = { ad.wait_until_free(port, 20, 150) }
        res = { a, b, c }
      end)
      assert(coroutine.resume(co))
      assert.equals("suspended", coroutine.status(co))
      assert.is_nil(res)
      assert.is_true(run_until(function() return res ~= nil end, 10000))
      local ticks = tick.n
      tick.stop()
      close()
      assert.same({ true }, res[1])
      assert.same({ true }, res[2])
      assert.same({ nil, "ETIMEDOUT" }, { res[3][1], res[3][3] })
      assert.is_true(ticks >= 15, "only " .. ticks .. " ticks during the wait")
    end)

    it("is correct when something else resumes the coroutine early", function()
      local port, close = listen_later(150)
      local res
      local co = coroutine.create(function()
        res = { ad.wait_until_used { port = port, timeout_ms = 5000 } }
      end)
      assert(coroutine.resume(co))
      local nudge = uv.new_timer()
      nudge:start(1, 1, function()
        if coroutine.status(co) == "suspended" then assert(coroutine.resume(co)) end
      end)
      assert.is_true(run_until(function() return res ~= nil end, 10000))
      nudge:close()
      close()
      assert.same({ true }, res)
    end)
  end)

  it("with yield = false, blocks inside a coroutine instead of suspending it", function()
    local port, close = listen_later(100)
    local res
    local co = coroutine.create(function()
      res = { ad.wait_until_used { port = port, timeout_ms = 5000, yield = false } }
    end)
    assert(coroutine.resume(co))
    close()
    assert.equals("dead", coroutine.status(co))
    assert.same({ true }, res)
  end)

  describe("blocking form (main thread)", function()
    it("runs the loop until the answer is in, serving other handles", function()
      local port, close = listen_later(200)
      local tick = ticker()
      local t0 = now()
      local ok, err = ad.wait_until_used(port, nil, 5000)
      local took = now() - t0
      local ticks = tick.n
      tick.stop()
      close()
      assert.is_true(ok, err)
      assert.is_true(took >= 190, "took " .. took .. " ms")
      assert.is_true(ticks >= 15, "only " .. ticks .. " ticks during the wait")
    end)

    it("refuses to block inside a luv callback", function()
      local r = H.reserve()
      local ok, err
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        ok, err = pcall(ad.check, r.port)
      end)
      run_until(function() return ok ~= nil end)
      r.close()
      assert.is_false(ok)
      assert.matches("check: cannot block inside a luv callback", err, 1, true)
    end)
  end)

  describe("check", function()
    it("answers true, false and both loopbacks like the core", function()
      local s = uv.new_tcp()
      assert(s:bind("127.0.0.1", 0))
      serve(s)
      local port = s:getsockname().port
      local r = H.reserve()
      assert.is_true(ad.check(port))
      assert.is_true(ad.check(port, "127.0.0.1"))
      assert.is_true(ad.check(port, "localhost"))
      assert.is_false(ad.check(r.port))
      assert.is_false(ad.check { port = r.port, host = "localhost" })
      s:close()
      r.close()
    end)

    it("counts a server on ::1 only when host is omitted", function()
      local has6, l6 = pcall(H.listen, "::1")
      if not has6 then
        pending("this machine has no IPv6")
        return
      end
      assert.is_true(ad.check(l6.port))
      assert.is_true(ad.check(l6.port, "[::1]"))
      l6.close()
    end)

    it("reports a per-attempt timeout as an error, never as free", function()
      local b = H.full_backlog()
      local t0 = now()
      local ok, err, code = ad.check { port = b.port, host = "127.0.0.1", timeout_ms = 200 }
      local took = now() - t0
      b.close()
      assert.is_nil(ok)
      assert.equals("ETIMEDOUT", code)
      assert.equals("connect 127.0.0.1:" .. b.port .. ": timed out", err)
      assert.is_true(took >= 190 and took < 2000, "took " .. took .. " ms")
    end)

    it("probes with bind in mode bind and with both in mode any", function()
      local l = H.listen("127.0.0.1")
      assert.is_true(ad.check { port = l.port, host = "127.0.0.1", mode = "bind" })
      assert.is_true(ad.check { port = l.port, mode = "any" })
      l.close()
      local free = H.free_port()
      assert.is_false(ad.check { port = free, host = "127.0.0.1", mode = "bind" })
      assert.is_false(ad.check { port = free, mode = "any" })
    end)

    it("leaves no file descriptor behind", function()
      local l = H.listen("127.0.0.1")
      local r = H.reserve()
      ad.check(l.port)
      uv.run("nowait")
      local before = H.fd_count()
      for _ = 1, 100 do
        ad.check(l.port)
        ad.check(r.port)
        l.drain()
      end
      uv.run("nowait")
      local after = H.fd_count()
      l.close()
      r.close()
      assert.equals(before, after)
    end)
  end)

  describe("UDP (proto = 'udp')", function()
    -- A UDP port that a luv timer binds after ms: the game server that
    -- starts later.
    local function udp_later(ms)
      local port, h = H.free_udp_port(), uv.new_udp()
      local t = uv.new_timer()
      uv.update_time()
      t:start(ms, 0, function()
        t:close()
        assert(h:bind("127.0.0.1", port))
      end)
      return port, function()
        if not t:is_closing() then t:close() end
        h:close()
      end
    end

    for _, mode in ipairs(H.udp_modes) do
      it("mode " .. mode .. " answers as the core for sockets on each address", function()
        local function same(port, host)
          local o = { port = port, host = host, proto = "udp", mode = mode }
          local want = require("tcp_port_used").check(o)
          assert.are.equal(want, ad.check(o), "host " .. tostring(host))
          return want
        end
        local u, other, held = H.udp("127.0.0.1"), H.udp("127.0.0.2"), H.udp("0.0.0.0", 0, { reuseaddr = true })
        assert.is_true(same(u.port, nil))
        assert.is_true(same(u.port, "127.0.0.1"))
        assert.is_false(same(other.port, nil))
        assert.is_true(same(other.port, "127.0.0.2"))
        assert.is_true(same(held.port, "127.0.0.1"))
        if H.has_ipv6() then
          assert.is_false(same(u.port, "::1"))
          local u6 = H.udp("::1")
          assert.is_true(same(u6.port, nil))
          assert.is_false(same(u6.port, "127.0.0.1"))
          u6.close()
        end
        u.close()
        other.close()
        held.close()
        assert.is_false(same(u.port, nil))
      end)

      it("mode " .. mode .. ": on_used sees a UDP socket bound 300 ms later, the loop ticking", function()
        local port, close = udp_later(300)
        local tick = ticker()
        local got, at
        local t0 = now()
        ad.on_used({ port = port, proto = "udp", mode = mode, timeout_ms = 5000 }, function(ok, err)
          got, at = { ok, err }, now() - t0
        end)
        assert.is_true(run_until(function() return got ~= nil end, 10000))
        local ticks = tick.n
        tick.stop()
        close()
        assert.same({ true, nil }, got)
        assert.is_true(at >= 290 and at < 3000, "answered after " .. at .. " ms")
        assert.is_true(ticks >= 20, "only " .. ticks .. " ticks during the wait")
      end)
    end

    it("waits in a coroutine, suspended, and in bind mode by default", function()
      local port, close = udp_later(100)
      local res
      local co = coroutine.create(function()
        res = { ad.wait_until_used { port = port, proto = "udp", timeout_ms = 5000 } }
      end)
      assert(coroutine.resume(co))
      assert.equals("suspended", coroutine.status(co))
      assert.is_true(run_until(function() return res ~= nil end, 10000))
      close()
      assert.same({ true }, res)
    end)

    it("refuses mode connect with UDP, saying why", function()
      local ok, err = pcall(ad.check, { port = 80, proto = "udp", mode = "connect" })
      assert.is_false(ok)
      assert.matches("mode must be bind or listen with proto udp (a connect probe has no handshake",
        err, 1, true)
    end)

    it("leaves no file descriptor behind", function()
      local u, free = H.udp("127.0.0.1"), H.free_udp_port()
      ad.check { port = u.port, proto = "udp" }
      uv.run("nowait")
      local before = H.fd_count()
      for _ = 1, 100 do
        assert.is_true(ad.check { port = u.port, proto = "udp" })
        assert.is_false(ad.check { port = free, proto = "udp" })
        assert.are.equal(H.LISTENING, ad.check { port = u.port, proto = "udp", mode = "listen" })
      end
      uv.run("nowait")
      local after = H.fd_count()
      u.close()
      assert.equals(before, after)
    end)
  end)

  it("run() runs waits concurrently on the loop", function()
    local port, close = listen_later(200)
    local r = H.reserve()
    local t0 = now()
    local res = ad.run(function()
      return ad.wait_until_used { port = port, timeout_ms = 5000 }
    end, function()
      return ad.wait_until_free(r.port)
    end, function()
      -- the core's own wait, which yields the milliseconds it wants to sleep
      return require("tcp_port_used").wait_until_used { port = port, timeout_ms = 5000 }
    end)
    local took = now() - t0
    close()
    r.close()
    assert.same({ { n = 1, true }, { n = 1, true }, { n = 1, true } }, res)
    assert.is_true(took < 3000, "took " .. took .. " ms")
  end)

  it("works where the C core was never built", function()
    local port = H.free_port()
    local out, rc = H.run(H.lua_cmd(string.format([[
      package.preload["tcp_port_used.core"] = function() error("not built here") end
      local uv = require "luv"
      local ad = require "tcp_port_used.uv"
      local s = uv.new_tcp()
      assert(s:bind("127.0.0.1", %d))
      local t = uv.new_timer()
      t:start(200, 0, function() t:close(); s:listen(8, function() end) end)
      local got
      ad.on_used(%d, { timeout_ms = 5000 }, function(ok, err) got = tostring(ok) .. " " .. tostring(err) end)
      while not got do uv.run("once") end
      print("core", ad.has_core)
      print("on_used", got)
      print("check", ad.check(%d))
      print("bind", ad.check { port = %d, mode = "bind" })
      print("listen", pcall(ad.check, { port = %d, mode = "listen" }))
      local u = uv.new_udp()
      assert(u:bind("127.0.0.1", 0))
      local up = u:getsockname().port
      print("udp", ad.check { port = up, proto = "udp" }, ad.check { port = up, host = "::1", proto = "udp" })
      print("udp wait", ad.wait_until_used { port = up, proto = "udp", timeout_ms = 1000 })
      u:close()
      print("udp free", ad.check { port = up, proto = "udp" })
      print("udp listen", pcall(ad.check, { port = up, proto = "udp", mode = "listen" }))
      s:close()
      uv.run()
    ]], port, port, port, port, port)) .. " 2>&1")
    assert.equals(0, rc, out)
    assert.matches("core\tfalse\n", out, 1, true)
    assert.matches("on_used\ttrue nil\n", out, 1, true)
    assert.matches("check\ttrue\n", out, 1, true)
    assert.matches("bind\ttrue\n", out, 1, true)
    -- listen mode asks the kernel through the C core: without it, a clear error
    assert.matches("listen\tfalse\t[^\n]*bad argument #1 to 'check'", out)
    -- UDP bind probes are luv UDP handles
    assert.matches("udp\ttrue\tfalse\n", out, 1, true)
    assert.matches("udp wait\ttrue\n", out, 1, true)
    assert.matches("udp free\tfalse\n", out, 1, true)
    assert.matches("udp listen\tfalse\t[^\n]*needs the C core", out)
  end)

  describe("bad arguments", function()
    it("raise errors naming the argument and value", function()
      assert.has_error(function() ad.check(0) end,
        "bad argument #1 to 'check' (port must be an integer in 1..65535, got 0)")
      assert.has_error(function() ad.wait_until_used("80") end,
        "bad argument #1 to 'wait_until_used' (port must be an integer in 1..65535, got \"80\")")
      assert.has_error(function() ad.wait_until_used_on_host(80, 1) end,
        "bad argument #2 to 'wait_until_used_on_host' (host must be a string or nil, got 1)")
      assert.has_error(function() ad.on_used(80, nil, nil) end,
        "bad argument #3 to 'on_used' (callback must be a function, got nil)")
      assert.has_error(function() ad.on_free({ port = 80 }, "cb") end,
        "bad argument #2 to 'on_free' (callback must be a function, got \"cb\")")
      assert.has_error(function() ad.on_used(80, 5, function() end) end,
        "bad argument #2 to 'on_used' (opts must be a table or nil, got 5)")
      local ok, err = pcall(ad.on_used, { port = 80, mode = "ping" }, function() end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'on_used' (mode must be one of ", err, 1, true)
      assert.matches('got "ping")', err, 1, true)
      assert.has_error(function() ad.run(function() end, 3) end,
        "bad argument #2 to 'run' (function expected, got 3)")
    end)

    it("of the callback forms point at the caller's line", function()
      local line = debug.getinfo(1, "l").currentline
      local _, repeated = pcall(function() ad.on_used(80, { port = 81 }, print) end)
      local _, no_cb = pcall(function() ad.on_free({ port = 80 }) end)
      local _, bad_port = pcall(function() ad.on_used(0, nil, print) end)
      assert.matches("uv_spec.lua:" .. line + 1 .. ": bad argument #2 to 'on_used' (opts must not hold port " ..
        "or ports when the port is argument #1)", repeated, 1, true)
      assert.matches("uv_spec.lua:" .. line + 2 .. ": bad argument #2 to 'on_free' (callback must be a " ..
        "function, got nil)", no_cb, 1, true)
      assert.matches("uv_spec.lua:" .. line + 3 .. ": bad argument #1 to 'on_used' (port must be", bad_port, 1, true)
    end)
  end)
end)
