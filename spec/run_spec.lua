-- `tcp-port-used run` with real supervisors: a NOTIFY_SOCKET receiver
-- speaking systemd's datagram protocol (spec/native/notify_recv.c, path
-- and abstract forms), and a real s6 supervision tree running a real
-- redis-server; signals forwarded to real children, exit statuses passed
-- through.
local core = require "tcp_port_used.core"
local tpu = require "tcp_port_used"
local H = require "helpers"

-- (after the checkout's, the paths of the runtime under test: Lua 5.5's
-- LuaSocket, which the children load, is found only through them)
local ENV = string.format("LUA_PATH=%s LUA_CPATH=%s ",
  H.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;" .. (os.getenv("LUA_PATH") or ";")),
  H.quote(H.cpath .. ";" .. (os.getenv("LUA_CPATH") or ";")))
local CLI = ENV .. H.lua_exec() .. " " .. H.quote(H.root .. "/bin/tcp-port-used")
local RECV = H.root .. "/build/test/notify_recv"

local await = H.await

local function tmpdir()
  local f = assert(io.popen("unset LD_PRELOAD; mktemp -d /tmp/tpu-run.XXXXXX"))
  local d = f:read("*l")
  f:close()
  return d
end

-- A child that listens on a TCP port of its own choosing after delay_s
-- (the port written to portfile), then holds it.
local function late_listener(delay_s, portfile)
  return H.lua_cmd(string.format([[
    local s = require 'socket'; s.sleep(%f)
    local l = require('helpers').listen('127.0.0.1')
    local f = io.open(%q, 'w'); f:write(l.port, '\n'); f:close()
    s.sleep(60)]], delay_s, portfile))
end

--- Starts `tcp-port-used run ARGS` in the background: returns its pid and
-- a function that waits for its exit status (and returns it with its
-- stderr).
local function start_run(argstr, env)
  local errfile = os.tmpname()
  local f = assert(io.popen("unset LD_PRELOAD; sh -c " .. H.quote((env or "") .. " " .. CLI .. " run " .. argstr ..
    " 2>" .. errfile .. " & echo $!; wait $!; echo exit=$?")))
  local pid = tonumber(f:read("*l"))
  return pid, function()
    -- the child's own output (redis-server logs to stdout) comes first
    local line
    repeat line = f:read("*l") until line == nil or line:match("^exit=")
    f:close()
    local err = H.slurp(errfile)
    os.remove(errfile)
    return tonumber(line and line:match("^exit=(%d+)$")), err
  end
end

--- A NOTIFY_SOCKET receiver at address: returns a function that reads
-- the next datagram (as "pid=N payload|...") and one that ends it.
local function receiver(address)
  local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec " .. RECV .. " " .. H.quote(address)))
  local pid = tonumber(f:read("*l"))
  assert.are.equal("bound", f:read("*l"))
  return function() return f:read("*l") end, function()
    os.execute("kill " .. pid)
    f:close()
  end
end

local function has(cmd)
  local _, rc = H.run("command -v " .. cmd .. " >/dev/null 2>&1")
  return rc == 0
end

if H.portable then
  describe("run (portable core)", function()
    it("says the sockets of a process need Linux", function()
      local _, wait = start_run("-- " .. late_listener(0, os.tmpname()))
      local status, err = wait()
      assert.are.equal(2, status)
      assert.matches("Linux", err)
    end)
  end)
  return
end

describe("run --notify systemd", function()
  for _, form in ipairs { "path", "abstract" } do
    it("sends READY=1 after the port accepts, never before (" .. form .. " address)", function()
      local dir = tmpdir()
      local address = form == "path" and dir .. "/notify" or
        "@tpu-spec-" .. H.pid() .. "-" .. math.random(1e9)
      local next_datagram, stop = receiver(address)
      local portfile = dir .. "/port"
      local pid, wait = start_run("--notify systemd -- " .. late_listener(0.5, portfile),
        "NOTIFY_SOCKET=" .. H.quote(address))
      local msg = next_datagram()
      -- at once, before anything else: the port it names must accept now
      local named = tonumber(msg and msg:match("STATUS=listening on 127%.0%.0%.1:(%d+)") or "")
      local accepts = named and core.connect("127.0.0.1", named) == true
      -- and it is the child's (which reports it once it listens)
      local port = tonumber(await("the child's port", function() return H.slurp(portfile):match("%d+") end))
      os.execute("kill -TERM " .. pid)
      local status, err = wait()
      stop()
      os.execute("rm -rf " .. H.quote(dir))
      assert.is_true(accepts, msg)
      assert.are.equal("pid=" .. pid .. " READY=1|MAINPID=" .. pid ..
        "|STATUS=listening on 127.0.0.1:" .. port .. "|", msg)
      -- SIGTERM forwarded: the Lua child died of it, and run says so
      assert.are.equal(128 + 15, status, err)
    end)
  end

  it("signals no readiness for a child that exits before it listens, and exits with its status", function()
    local dir = tmpdir()
    local address = dir .. "/notify"
    local next_datagram, stop = receiver(address)
    local _, wait = start_run("--notify systemd -- sh -c 'sleep 0.2; exit 3'",
      "NOTIFY_SOCKET=" .. H.quote(address))
    local status, err = wait()
    -- the first datagram the receiver gets is ours, sent after run ended
    assert(require("tcp_port_used.exec").notify(address, "END"))
    local msg = next_datagram()
    local _, killed = start_run("--notify systemd -- sh -c 'kill -KILL $$'",
      "NOTIFY_SOCKET=" .. H.quote(address))
    local kstatus = killed()
    stop()
    os.execute("rm -rf " .. H.quote(dir))
    assert.are.equal(3, status, err)
    assert.matches("exited %(status 3%) before it listened", err)
    assert.matches(" END$", msg)
    assert.are.equal(128 + 9, kstatus)
  end)

  it("refuses --notify systemd without NOTIFY_SOCKET", function()
    local _, wait = start_run("--notify systemd -- true", "unset NOTIFY_SOCKET;")
    local status, err = wait()
    assert.are.equal(2, status)
    assert.matches("NOTIFY_SOCKET is not set", err)
  end)
end)

describe("run", function()
  it("forwards HUP, INT, QUIT, USR1, USR2, WINCH and TERM, and exits with the child's status", function()
    local dir = tmpdir()
    local got, portfile = dir .. "/got", dir .. "/port"
    local script = string.format([[
      for s in HUP INT QUIT USR1 USR2 WINCH; do trap "echo $s >> %s" $s; done
      trap 'echo TERM >> %s; kill $L; exit 7' TERM
      %s & L=$!
      while :; do sleep 0.05; done]], got, got, late_listener(0, portfile))
    local pid, wait = start_run("-- sh -c " .. H.quote(script))
    await("the child to listen", function() return H.slurp(portfile):match("%d+") end)
    local port = tonumber(H.slurp(portfile):match("%d+"))
    await("run to see the listener", function()
      return (tpu.listeners { pid = pid } or {})[1] ~= nil
    end)
    for _, sig in ipairs { "HUP", "INT", "QUIT", "USR1", "USR2", "WINCH" } do
      os.execute("kill -" .. sig .. " " .. pid)
      await("the child to get SIG" .. sig, function() return H.slurp(got):find(sig, 1, true) end)
    end
    -- still serving after all of them
    assert.is_true(core.connect("127.0.0.1", port))
    os.execute("kill -TERM " .. pid)
    local status, err = wait()
    local lines = H.slurp(got)
    os.execute("rm -rf " .. H.quote(dir))
    assert.are.equal("HUP\nINT\nQUIT\nUSR1\nUSR2\nWINCH\nTERM\n", lines)
    assert.are.equal(7, status, err)
  end)

  it("writes the ports to --ports-file (whole) and to stderr with --print-ports", function()
    local dir = tmpdir()
    local portfile = dir .. "/port"
    local pid, wait = start_run("--print-ports --ports-file " .. H.quote(dir .. "/ports") ..
      " -- " .. late_listener(0.3, portfile))
    local ports = await("the ports file", function()
      local s = H.slurp(dir .. "/ports")
      return s ~= "" and s
    end)
    local port = H.slurp(portfile):match("%d+")
    os.execute("kill -TERM " .. pid)
    local _, err = wait()
    local left = H.run("ls " .. H.quote(dir))
    os.execute("rm -rf " .. H.quote(dir))
    assert.are.equal(port .. "\n", ports)
    assert.matches("\n" .. port .. "\n", "\n" .. err)
    -- no temporary file left beside it
    assert.are.equal("port\nports\n", left)
  end)

  it("waits for every --port, and for --listeners N", function()
    for _, how in ipairs { "ports", "count" } do
      local dir = tmpdir()
      local a, b = H.free_port(), H.free_port()
      local two = H.lua_cmd(string.format([[
        local s = require 'socket'; local H = require 'helpers'
        local x = H.listen('127.0.0.1', %d); s.sleep(0.4); local y = H.listen('127.0.0.1', %d)
        s.sleep(60)]], a, b))
      local pid, wait = start_run((how == "ports" and "--port " .. a .. " --port " .. b or "--listeners 2")
        .. " --ports-file " .. H.quote(dir .. "/ports") .. " -- " .. two)
      local ports = await("the ports file", function()
        local t = H.slurp(dir .. "/ports")
        return t ~= "" and t
      end)
      -- ready only once both listen: b opens 0.4 s after a
      local b_open = core.connect("127.0.0.1", b)
      os.execute("kill -TERM " .. pid)
      local _, err = wait()
      os.execute("rm -rf " .. H.quote(dir))
      assert.is_true(b_open)
      local want = a < b and a .. "\n" .. b .. "\n" or b .. "\n" .. a .. "\n"
      assert.are.equal(want, ports)
      assert.matches("listening on 127.0.0.1:" .. math.min(a, b) .. ", 127.0.0.1:" .. math.max(a, b),
        err, 1, true)
    end
  end)

  it("waits for --ready redis and --ready redis://HOST:PORT: a real redis-server answering PING", function()
    if not has("redis-server") then
      pending("redis-server is not installed")
      return
    end
    for _, ready in ipairs { "redis", "url" } do
      local dir = tmpdir()
      local port = H.free_port()
      local pid, wait = start_run("--ready " .. (ready == "url" and "redis://127.0.0.1:" .. port or "redis") ..
        " --ports-file " .. H.quote(dir .. "/ports") ..
        " -- redis-server --port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no")
      await("the ports file", function() return H.slurp(dir .. "/ports") ~= "" end)
      local answers = tpu.check { port = port, host = "127.0.0.1", ready = "redis" }
      os.execute("kill -TERM " .. pid)
      local status, err = wait()
      os.execute("rm -rf " .. H.quote(dir))
      assert.is_true(answers)
      -- redis-server exits 0 on SIGTERM, and run with it
      assert.are.equal(0, status, err)
    end
  end)

  it("--ready redis waits while the server answers -LOADING", function()
    local dir = tmpdir()
    -- a Redis stand-in: -LOADING for its first 0.6 s, then +PONG (and a
    -- file that says so)
    local server = H.lua_cmd(string.format([[
      local socket = require 'socket'
      local l = require('helpers').listen('127.0.0.1')
      local t0, pong = socket.gettime(), false
      l.sock:settimeout(0.05)
      while true do
        local c = l.sock:accept()
        if c then
          c:settimeout(1)
          c:receive('*l')
          if not pong and socket.gettime() - t0 > 0.6 then
            pong = true
            local f = io.open(%q, 'w'); f:close()
          end
          c:send(pong and '+PONG\r\n' or '-LOADING Redis is loading the dataset in memory\r\n')
          c:close()
        end
      end]], dir .. "/pong"))
    local pid, wait = start_run("--ready redis --ports-file " .. H.quote(dir .. "/ports") .. " -- " .. server)
    await("the ports file", function() return H.slurp(dir .. "/ports") ~= "" end)
    local answered_pong = io.open(dir .. "/pong") ~= nil
    os.execute("kill -TERM " .. pid)
    wait()
    os.execute("rm -rf " .. H.quote(dir))
    assert.is_true(answered_pong)
  end)

  it("stops the child after --timeout, says why and exits 1", function()
    local dir = tmpdir()
    local got = dir .. "/got"
    local t0 = core.now()
    local _, wait = start_run("--timeout 300 -- sh -c " ..
      H.quote("trap 'echo TERM > " .. got .. "; exit 0' TERM; while :; do sleep 0.05; done"))
    local status, err = wait()
    local took = core.now() - t0
    local term = H.slurp(got)
    os.execute("rm -rf " .. H.quote(dir))
    assert.are.equal(1, status, err)
    assert.matches("did not listen within 300 ms %(no listeners; waiting for 1 listener%)", err)
    assert.are.equal("TERM\n", term)
    -- SIGTERM sufficed: no 5 s wait for SIGKILL
    assert.is_true(took < 4500, took)
  end)

  it("exits 127 for a command that does not exist", function()
    local _, wait = start_run("-- /nonexistent/command")
    local status, err = wait()
    assert.are.equal(127, status)
    assert.matches("command not found", err)
  end)
end)

describe("run under s6", function()
  if not (has("s6-svscan") and has("redis-server")) then
    pending("s6 or redis-server is not installed")
    return
  end

  -- A scan directory with one service whose run script is `tcp-port-used
  -- run --notify s6=3 -- DAEMON`, and notification-fd 3.
  local function supervise(daemon)
    local scan = tmpdir()
    local svc = scan .. "/svc"
    os.execute("mkdir -p " .. H.quote(svc))
    local f = assert(io.open(svc .. "/run", "w"))
    f:write("#!/bin/sh\nexec env ", CLI, " run --notify s6=3 -- ", daemon, "\n")
    f:close()
    f = assert(io.open(svc .. "/notification-fd", "w"))
    f:write("3\n")
    f:close()
    os.execute("chmod +x " .. H.quote(svc .. "/run"))
    local scanner = H.spawn("exec s6-svscan " .. H.quote(scan) .. " >" .. H.quote(scan .. ".log") .. " 2>&1")
    await("s6-supervise to start", function() return select(2, H.run("s6-svok " .. H.quote(svc))) == 0 end)
    return svc, function()
      os.execute("s6-svc -wD -d -T 10000 " .. H.quote(svc) .. " >/dev/null 2>&1")
      os.execute("s6-svscanctl -t " .. H.quote(scan) .. " 2>/dev/null")
      await("s6-svscan to end", function()
        return select(2, H.run("kill -0 " .. scanner .. " 2>/dev/null")) ~= 0
      end)
      os.execute("rm -rf " .. H.quote(scan) .. " " .. H.quote(scan .. ".log"))
    end, scan .. ".log"
  end

  it("s6-svwait -U returns once redis-server listens and answers", function()
    local port = H.free_port()
    local svc, stop = supervise("redis-server --port " .. port ..
      " --bind 127.0.0.1 --save '' --appendonly no --daemonize no")
    local out, rc = H.run("s6-svwait -U -t 30000 " .. H.quote(svc) .. " 2>&1")
    local ready = tpu.check { port = port, host = "127.0.0.1", ready = "redis" }
    local state = H.run("s6-svstat " .. H.quote(svc))
    -- down: s6-supervise's SIGTERM reaches redis through run, whose exit is redis's
    H.run("s6-svc -wD -d -T 10000 " .. H.quote(svc))
    local down = H.run("s6-svstat " .. H.quote(svc))
    local still = tpu.check { port = port, host = "127.0.0.1" }
    stop()
    assert.are.equal(0, rc, out)
    assert.is_true(ready)
    assert.matches("^up .*ready", state)
    assert.matches("^down %(exitcode 0%)", down)
    assert.is_false(still)
  end)

  it("s6-svwait -U returns only after a daemon that binds late listens", function()
    local dir = tmpdir()
    local portfile = dir .. "/port"
    local svc, stop, log = supervise(late_listener(1, portfile))
    -- not ready while it has not bound
    local _, early = H.run("s6-svwait -U -t 300 " .. H.quote(svc) .. " 2>/dev/null")
    local out, rc = H.run("s6-svwait -U -t 30000 " .. H.quote(svc) .. " 2>&1")
    local port = tonumber(H.slurp(portfile):match("%d+") or "")
    local accepts = port and core.connect("127.0.0.1", port) == true
    out = out .. H.slurp(log)
    stop()
    os.execute("rm -rf " .. H.quote(dir))
    assert.are_not.equal(0, early)
    assert.are.equal(0, rc, out)
    assert.is_true(accepts)
  end)
end)
