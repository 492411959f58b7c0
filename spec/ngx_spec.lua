-- tcp_port_used.ngx inside a real nginx (Debian's nginx-light with
-- libnginx-mod-http-lua): the spec starts it on a loopback port picked at
-- run time, with its own prefix and spec/nginx/nginx.conf, talks to it over
-- HTTP and reads its shared dict (through /result) and its error log.
-- nginx runs LuaJIT whatever runtime runs busted; the spec only drives it.
local H = require "helpers"
local socket = require "socket"

local NG = require "ngxrun"
local await, alive = NG.await, NG.alive

-- The running nginx, and the ports its configuration names.
local N = {}

local function send(path, timeout_s)
  return N.nginx:send(path, timeout_s)
end

local function receive(c)
  return N.nginx:receive(c)
end

local function get(path, timeout_s)
  return N.nginx:get(path, timeout_s)
end

--- The body of a 200 response, without its final newline.
local function body(path)
  return N.nginx:body(path)
end

local function result(key)
  return body("/result?key=" .. key:gsub(" ", "%%20"))
end

local function error_log()
  return N.nginx:error_log()
end

describe("tcp_port_used.ngx", function()
  it("refuses to load outside OpenResty, saying where it runs", function()
    assert.has_error(function() require "tcp_port_used.ngx" end,
      "tcp_port_used.ngx runs inside OpenResty (nginx with lua-nginx-module); " ..
      "elsewhere require 'tcp_port_used'")
  end)

  local absent = NG.missing()
  if absent then
    it("runs inside a real nginx", function() pending("needs " .. absent) end)
    return
  end

  describe("in a real nginx", function()
    setup(function()
      N.init_port = H.free_port()
      -- init_by_lua waits for this child's listener, which opens after 1 s
      -- (nginx's start takes some of it: a busy machine took 0.47 s)
      N.init_child = H.listen_later(N.init_port, 1, 30)
      N.now = H.listen()
      N.later = H.reserve()
      N.refused = H.reserve()
      N.nginx = NG.start("nginx.conf", {
        INIT_PORT = N.init_port, WORKER_NOW_PORT = N.now.port,
        WORKER_LATER_PORT = N.later.port, REFUSED_PORT = N.refused.port,
      })
      N.pid = N.nginx.pid
    end)

    teardown(function()
      if N.nginx then N.nginx:stop() end
      if N.init_child then H.kill(N.init_child) end
      for _, k in ipairs { "now", "later", "refused" } do
        if N[k] then N[k].close() end
      end
    end)

    it("blocks in init_by_lua until the port opens", function()
      local ok, err, ms = result("init"):match("^(%S+) (%S+) (%d+)$")
      assert.are.equal("true", ok)
      assert.are.equal("nil", err)
      -- It really waited for the child's listener rather than answering at once.
      assert.is_true(tonumber(ms) >= 50, "waited only " .. ms .. " ms")
      assert.matches("on_used: nginx has no timers in the 'init' phase", result("init_on_used"), 1, true)
    end)

    it("runs init_worker callbacks once, after on_used has returned", function()
      assert.are.equal("true nil after", await("worker_now", function()
        local r = result("worker_now")
        return r ~= "nil" and r
      end))
      assert.are.equal("1", result("calls worker_now"))
      assert.are.equal("true", result("worker_check"))
      assert.matches("wait_until_used: cannot wait in the nginx 'init_worker' phase",
        result("worker_wait_error"), 1, true)
    end)

    it("gives init_worker callbacks a timeout and a free port", function()
      local r = await("worker_timeout", function()
        local v = result("worker_timeout")
        return v ~= "nil" and v
      end)
      assert.matches("^nil timeout", r)
      assert.are.equal("true", result("worker_free"))
      assert.are.equal("1", result("calls worker_timeout"))
      assert.are.equal("1", result("calls worker_free"))
    end)

    it("keeps an init_worker wait pending until the port opens", function()
      assert.are.equal("nil", result("worker_later"))
      N.later.sock:listen(32)
      assert.are.equal("true", await("worker_later", function()
        local v = result("worker_later")
        return v ~= "nil" and v
      end))
      assert.are.equal("1", result("calls worker_later"))
    end)

    it("answers a waiting request when the port opens, serving others meanwhile", function()
      local r = H.reserve()
      finally(r.close)
      -- Probes 4 s apart: a wait that blocked the worker between them
      -- would hold /ping for seconds.
      local waiting = send("/wait?port=" .. r.port .. "&timeout=30000&retry=4000", 30)
      await("the wait to retry", function() return tonumber(result("retries " .. r.port)) end)
      local t0 = socket.gettime()
      assert.are.equal("pong", body("/ping"))
      assert.are.equal("true", body("/check?port=" .. N.now.port))
      assert.is_true(socket.gettime() - t0 < 1.5, "the worker was blocked")
      waiting:settimeout(0)
      local _, err = waiting:receive(1)
      assert.are.equal("timeout", err)
      waiting:settimeout(30)
      r.sock:listen(32)
      local status, b = receive(waiting)
      assert.are.equal(200, status)
      assert.are.equal("true\n", b)
    end)

    it("waits until a port is free", function()
      local l = H.listen()
      local closed = false
      finally(function() if not closed then l.close() end end)
      local waiting = send("/wait?free=1&port=" .. l.port .. "&timeout=30000", 30)
      await("the wait to retry", function() return tonumber(result("retries " .. l.port)) end)
      l.close()
      closed = true
      local _, b = receive(waiting)
      assert.are.equal("true\n", b)
    end)

    it("returns nil, 'timeout' when the port never opens", function()
      local t0 = socket.gettime()
      local r = body("/wait?port=" .. N.refused.port .. "&timeout=300")
      local took = socket.gettime() - t0
      assert.matches("^nil timeout", r)
      assert.is_true(took >= 0.29 and took < 5, "took " .. took .. " s")
    end)

    it("checks with cosockets: open, refused, names, both loopbacks", function()
      assert.are.equal("true", body("/check?port=" .. N.now.port))
      assert.are.equal("true", body("/check?port=" .. N.now.port .. "&host=127.0.0.1"))
      assert.are.equal("true", body("/check?port=" .. N.now.port .. "&host=localhost"))
      assert.are.equal("false", body("/check?port=" .. N.refused.port))
      assert.are.equal("false", body("/check?port=" .. N.refused.port .. "&host=localhost"))
      local core = require "tcp_port_used.core"
      if not core.ipv6() then return pending("this machine has no IPv6") end
      local l6 = H.listen("::1")
      finally(l6.close)
      assert.are.equal("true", body("/check?port=" .. l6.port))
      assert.are.equal("true", body("/check?port=" .. l6.port .. "&host=::1"))
      assert.are.equal("true", body("/check?port=" .. l6.port .. "&host=%5B::1%5D"))
      assert.are.equal("false", body("/check?port=" .. l6.port .. "&host=127.0.0.1"))
    end)

    it("reports a per-attempt timeout as an error, never as free", function()
      local l = H.full_backlog()
      finally(l.close)
      assert.are.equal("nil connect 127.0.0.1:" .. l.port .. ": timed out ETIMEDOUT",
        body("/check?timeout=200&host=127.0.0.1&port=" .. l.port))
    end)

    -- Cosockets cannot bind, ask the kernel or reset a connection: each
    -- answer here is one that only the C core's probe gives.
    it("probes bind, listen and any modes and close = 'reset' through the C core", function()
      local free = H.free_port()
      -- a port bound but not listening: bind says in use, a connect would
      -- have been refused
      assert.are.equal("true", body("/check?mode=bind&host=127.0.0.1&port=" .. N.refused.port))
      assert.are.equal("true", body("/check?mode=any&host=127.0.0.1&port=" .. N.refused.port))
      assert.are.equal("false", body("/check?host=127.0.0.1&port=" .. N.refused.port))
      assert.are.equal("false", body("/check?mode=bind&port=" .. free))
      -- listen mode asks the kernel: nothing reaches the listener
      local l = H.listen()
      finally(l.close)
      assert.are.equal("true", body("/check?mode=listen&port=" .. l.port))
      l.sock:settimeout(0)
      assert.is_nil(l.sock:accept(), "a listen-mode probe connected")
      assert.are.equal("false", body("/check?mode=listen&port=" .. free))
      -- close = "reset" leaves no TIME_WAIT entry, a graceful close one
      local function probe(close)
        assert.are.equal("true", body("/check?host=127.0.0.1&close=" .. close .. "&port=" .. l.port))
      end
      assert.are.equal(0, H.time_waits_left(l, 3, "reset", probe), "after 3 probes closed with a reset")
      assert.are.equal(3, H.time_waits_left(l, 3, "graceful", probe), "after 3 probes closed gracefully")
    end)

    describe("UDP (proto=udp)", function()
      it("checks in mode bind (the default for UDP) and listen through the C core", function()
        local u, other, free = H.udp("127.0.0.1"), H.udp("127.0.0.2"), H.free_udp_port()
        finally(function() u.close() other.close() end)
        for _, mode in ipairs { "", "&mode=bind", "&mode=listen" } do
          local q = "/check?proto=udp" .. mode .. "&port="
          assert.are.equal("true", body(q .. u.port), mode)
          assert.are.equal("true", body(q .. u.port .. "&host=127.0.0.1"), mode)
          assert.are.equal("false", body(q .. other.port), mode)
          assert.are.equal("true", body(q .. other.port .. "&host=127.0.0.2"), mode)
          assert.are.equal("false", body(q .. free), mode)
          -- the TCP port of the same number is another port
          assert.are.equal("false", body("/check?host=127.0.0.1&port=" .. u.port))
        end
      end)

      it("waits for a UDP socket a child binds 300 ms later, serving others meanwhile", function()
        local port = H.free_udp_port()
        local child = H.listen_later(port, 0.3, 0.5, "127.0.0.1", "udp")
        finally(function() H.kill(child) end)
        local t0 = socket.gettime()
        local waiting = send("/wait?proto=udp&port=" .. port .. "&timeout=10000", 30)
        await("the wait to retry", function() return tonumber(result("retries " .. port)) end)
        assert.are.equal("pong", body("/ping"))
        local status, b = receive(waiting)
        local took = socket.gettime() - t0
        assert.are.equal(200, status)
        assert.are.equal("true\n", b)
        assert.is_true(took >= 0.25 and took < 9, "took " .. took .. " s")
        -- the child holds it for half a second more
        assert.are.equal("true", body("/wait?free=1&proto=udp&mode=listen&timeout=10000&port=" .. port))
      end)

      it("runs on_used with proto udp in a timer", function()
        local port = H.free_udp_port()
        local key = "on_used " .. port
        assert.are.equal("returned true", body("/on_used?proto=udp&mode=listen&timeout=30000&port=" .. port))
        assert.are.equal("nil", result(key))
        local u = H.udp("127.0.0.1", port)
        finally(u.close)
        assert.are.equal("true", await(key, function()
          local v = result(key)
          return v ~= "nil" and v
        end))
      end)

      it("leaves no descriptor behind in the worker", function()
        local lfs = require "lfs"
        local function worker_fds()
          local n = 0
          for name in lfs.dir("/proc/" .. N.nginx.worker .. "/fd") do
            if name:match("^%d+$") then n = n + 1 end
          end
          return n
        end
        local u, free = H.udp("127.0.0.1"), H.free_udp_port()
        finally(u.close)
        body("/check?proto=udp&port=" .. u.port)
        local before = worker_fds()
        for _ = 1, 50 do
          assert.are.equal("true", body("/check?proto=udp&port=" .. u.port))
          assert.are.equal("false", body("/check?proto=udp&host=127.0.0.1&port=" .. free))
          assert.are.equal("true", body("/check?proto=udp&mode=listen&port=" .. u.port))
        end
        assert.are.equal(before, worker_fds())
      end)
    end)

    it("runs on_used from a request in a timer that outlives it", function()
      local r = H.reserve()
      finally(r.close)
      local key = "on_used " .. r.port
      assert.are.equal("returned true", body("/on_used?timeout=30000&port=" .. r.port))
      assert.are.equal("nil", result(key))
      r.sock:listen(32)
      assert.are.equal("true", await(key, function()
        local v = result(key)
        return v ~= "nil" and v
      end))
    end)

    it("raises clear errors for bad arguments", function()
      local lines = {}
      for line in body("/bad"):gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.matches("bad argument #1 to 'wait_until_used' (port must be an integer in 1..65535, got 0)",
        lines[1], 1, true)
      assert.matches("bad argument #1 to 'check' (mode must be one of", lines[2], 1, true)
      assert.matches("bad argument #3 to 'on_used' (callback must be a function, got \"not a function\")",
        lines[3], 1, true)
      assert.matches("bad argument #2 to 'on_free' (opts must not hold port", lines[4], 1, true)
      assert.matches("bad argument #1 to 'check' (mode must be bind or listen with proto udp (a connect " ..
        "probe has no handshake to observe over UDP", lines[5], 1, true)
      assert.matches("bad argument #1 to 'wait_until_used' (proto must be one of tcp, udp, got \"sctp\")",
        lines[6], 1, true)
    end)

    it("raises an error naming the phase in header_filter, without freezing", function()
      local t0 = socket.gettime()
      local status, b, headers = get("/header_filter")
      assert.are.equal(200, status)
      assert.are.equal("body\n", b)
      assert.is_true(socket.gettime() - t0 < 2)
      assert.matches("wait_until_used: cannot wait in the nginx 'header_filter' phase",
        headers["x-wait-error"], 1, true)
      assert.matches("check: cannot probe in the nginx 'header_filter' phase",
        headers["x-check-error"], 1, true)
      -- the core module's waits, which choose ngx.sleep inside nginx, refuse alike
      assert.equals(headers["x-wait-error"], headers["x-core-wait-error"])
    end)

    it("raises an error naming the phase in log_by_lua", function()
      assert.are.equal("body", body("/log"))
      await("the log phase's error", function()
        return error_log():find("log phase: [^\n]*wait_until_free: cannot wait in the nginx 'log' phase")
      end)
    end)

    -- Last: it stops nginx.
    it("ends a pending on_used with ECANCELED when nginx quits", function()
      local key = "on_used " .. N.refused.port
      assert.are.equal("returned true", body("/on_used?timeout=60000&port=" .. N.refused.port))
      local t0 = socket.gettime()
      os.execute("kill -QUIT " .. N.pid)
      await("nginx to quit", function() return not alive(N.pid) end, 20)
      assert.is_true(socket.gettime() - t0 < 10)
      assert.matches("callback " .. key .. ": nil on_used port " .. N.refused.port ..
        ": canceled: the nginx worker is exiting ECANCELED", error_log(), 1, true)
    end)
  end)
end)
