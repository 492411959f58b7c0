-- tcp_port_used.ngx inside a real nginx (Debian's nginx-light with
-- libnginx-mod-http-lua): the spec starts it on a loopback port picked at
-- run time, with its own prefix and spec/nginx/nginx.conf, talks to it over
-- HTTP and reads its shared dict (through /result) and its error log.
-- nginx runs LuaJIT whatever runtime runs busted; the spec only drives it.
local H = require "helpers"
local socket = require "socket"

local NGINX = "/usr/sbin/nginx"
local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function missing()
  for _, p in ipairs { NGINX, MODULES[1], MODULES[2], H.root .. "/build/jit/tcp_port_used/core.so" } do
    if not exists(p) then return p end
  end
end

--- Polls f until it returns a truthy value; fails after `s` seconds.
local function await(what, f, s)
  local deadline = socket.gettime() + (s or 10)
  while true do
    local v = f()
    if v then return v end
    if socket.gettime() > deadline then error("timed out waiting for " .. what, 2) end
    socket.sleep(0.01)
  end
end

-- A process counts as gone once it is a zombie: nginx is not our child,
-- and whoever reaps it may be slow.
local function alive(pid)
  local stat = slurp("/proc/" .. pid .. "/stat")
  return stat ~= "" and not stat:match("^%d+ %b() Z")
end

local N = {}

local function send(path, timeout_s)
  local c = socket.tcp()
  c:settimeout(timeout_s or 10)
  assert(c:connect("127.0.0.1", N.port))
  assert(c:send("GET " .. path .. " HTTP/1.0\r\nHost: spec\r\n\r\n"))
  return c
end

local function receive(c)
  local data, err, partial = c:receive("*a")
  c:close()
  if not data then error("no response from nginx (" .. err .. "): " .. tostring(partial), 2) end
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return tonumber(head:match("^HTTP/%d%.%d (%d+)")), body, headers
end

local function get(path, timeout_s)
  return receive(send(path, timeout_s))
end

--- The body of a 200 response, without its final newline.
local function body(path)
  local status, b = get(path)
  assert.are.equal(200, status)
  return (b:gsub("\n$", ""))
end

local function result(key)
  return body("/result?key=" .. key:gsub(" ", "%%20"))
end

local function error_log()
  return slurp(N.prefix .. "/logs/error.log")
end

local function start()
  local f = assert(io.popen("mktemp -d /tmp/tpu-ngx.XXXXXX"))
  N.prefix = f:read("*l")
  f:close()
  os.execute("mkdir -p " .. N.prefix .. "/logs " .. N.prefix .. "/tmp")
  N.port = H.free_port()
  local vars = {
    LOAD_MODULES = "load_module " .. MODULES[1] .. ";\nload_module " .. MODULES[2] .. ";",
    ROOT = H.root, PORT = N.port, INIT_PORT = N.init_port,
    WORKER_NOW_PORT = N.now.port, WORKER_LATER_PORT = N.later.port, REFUSED_PORT = N.refused.port,
  }
  local conf = slurp(H.root .. "/spec/nginx/nginx.conf"):gsub("%${([%w_]+)}", function(k)
    return tostring(assert(vars[k], k))
  end)
  local out = assert(io.open(N.prefix .. "/nginx.conf", "w"))
  out:write(conf)
  out:close()
  H.spawn(string.format("%s -p %s/ -c %s/nginx.conf -e %s/logs/error.log -g 'daemon off;' 2>%s/stderr.log",
    NGINX, N.prefix, N.prefix, N.prefix, N.prefix))
  local ok = pcall(await, "nginx to answer", function()
    local c = socket.tcp()
    c:settimeout(1)
    local up = c:connect("127.0.0.1", N.port)
    c:close()
    return up
  end, 20)
  if ok then
    -- nginx listens before it writes its pid file.
    local got, pid = pcall(await, "nginx's pid file", function()
      return tonumber(slurp(N.prefix .. "/logs/nginx.pid"))
    end)
    ok, N.pid = got, got and pid or nil
  end
  if not ok then
    error("nginx did not start:\n" .. slurp(N.prefix .. "/stderr.log") .. error_log())
  end
  N.worker = tonumber(body("/pid"))
end

local function stop()
  N.pid = N.pid or (N.prefix and tonumber(slurp(N.prefix .. "/logs/nginx.pid")))
  -- The master first: a worker stopped on its own is replaced.
  for _, pid in ipairs { N.pid or false, N.worker or false } do
    if pid and alive(pid) then
      os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
      if not pcall(await, "nginx to stop", function() return not alive(pid) end, 10) then
        os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      end
    end
  end
  if N.prefix then os.execute("rm -rf " .. N.prefix) end
end

describe("tcp_port_used.ngx", function()
  it("refuses to load outside OpenResty, saying where it runs", function()
    assert.has_error(function() require "tcp_port_used.ngx" end,
      "tcp_port_used.ngx runs inside OpenResty (nginx with lua-nginx-module); " ..
      "elsewhere require 'tcp_port_used'")
  end)

  local absent = missing()
  if absent then
    it("runs inside a real nginx", function() pending("needs " .. absent) end)
    return
  end

  describe("in a real nginx", function()
    setup(function()
      N.init_port = H.free_port()
      -- init_by_lua waits for this child's listener, which opens after 0.5 s.
      N.init_child = H.listen_later(N.init_port, 0.5, 30)
      N.now = H.listen()
      N.later = H.reserve()
      N.refused = H.reserve()
      start()
    end)

    teardown(function()
      stop()
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

    it("probes bind, listen and any modes and close = 'reset' through the C core", function()
      local free = H.free_port()
      assert.are.equal("true", body("/check?mode=listen&port=" .. N.now.port))
      assert.are.equal("false", body("/check?mode=listen&port=" .. free))
      assert.are.equal("true", body("/check?mode=bind&port=" .. N.now.port))
      assert.are.equal("false", body("/check?mode=bind&port=" .. free))
      assert.are.equal("true", body("/check?mode=any&port=" .. N.now.port))
      assert.are.equal("true", body("/check?close=reset&port=" .. N.now.port))
      assert.are.equal("false", body("/check?close=reset&port=" .. N.refused.port))
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
    end)

    it("raises an error naming the phase in log_by_lua", function()
      assert.are.equal("body", body("/log"))
      await("the log phase's error", function()
        return error_log():find("log phase: [^\n]*wait_until_free: cannot wait in the nginx 'log' phase")
      end)
    end)

    -- Last: it stops nginx.
    it("ends a pending on_used with 'shutdown' when nginx quits", function()
      local key = "on_used " .. N.refused.port
      assert.are.equal("returned true", body("/on_used?timeout=60000&port=" .. N.refused.port))
      local t0 = socket.gettime()
      os.execute("kill -QUIT " .. N.pid)
      await("nginx to quit", function() return not alive(N.pid) end, 20)
      assert.is_true(socket.gettime() - t0 < 10)
      assert.matches("callback " .. key .. ": nil shutdown", error_log(), 1, true)
    end)
  end)
end)
