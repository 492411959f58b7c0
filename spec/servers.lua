--- Real servers for the specs, each in a throwaway directory under /tmp on
-- a loopback port picked at run time, stopped by the spec that started
-- it: PostgreSQL 15 (Debian's package, run as user postgres via runuser:
-- it refuses root), redis-server and nginx. A start function returns the
-- server, or nil and why it cannot run here (the spec is then pending).
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"
local R = require "readable"

local S = {}

-- Shell commands go through H.run, which keeps the sanitizers' preloaded
-- runtimes out of them (an ASan-preloaded cp that reports a leak fails).

--- Polls until cond() holds or ms pass; returns whether it held.
function S.await(ms, cond)
  local deadline = core.now() + ms
  while not cond() do
    if core.now() > deadline then return false end
    core.sleep(10)
  end
  return true
end

function S.log_lines(path)
  local lines = {}
  local f = io.open(path)
  if not f then return lines end
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

--- The lines of the log at path after the first `base`.
function S.lines_after(path, base)
  local new = {}
  for i, line in ipairs(S.log_lines(path)) do
    if i > base then new[#new + 1] = line end
  end
  return new
end

local function logged(path, text)
  for _, line in ipairs(S.log_lines(path)) do
    if line:find(text, 1, true) then return true end
  end
  return false
end
S.logged = logged

--- A fresh directory under /tmp that other users may enter (nginx's
-- workers and postgres run as other users).
function S.tmpdir(name)
  local dir = H.run("mktemp -d /tmp/tpu-" .. name .. ".XXXXXX"):gsub("%s+$", "")
  H.run("chmod 755 " .. dir)
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end
S.write = write

local slurp = H.slurp
S.slurp = slurp

local function gone(pid)
  local _, rc = H.run("kill -0 " .. pid .. " 2>/dev/null")
  return rc ~= 0
end

--- PostgreSQL -----------------------------------------------------------

local PG = "/usr/lib/postgresql/15/bin/"

--- A new cluster in a directory of its own (initdb, trust for everyone,
-- superuser postgres), not started: { dir, data, log }.
function S.pg_init(name)
  local _, rc = H.run("[ \"$(id -u)\" = 0 ] && command -v runuser >/dev/null && id postgres >/dev/null 2>&1" ..
    " && [ -x " .. PG .. "initdb ] && [ -x " .. PG .. "postgres ]")
  if rc ~= 0 then
    return nil, "needs Debian's postgresql 15, the postgres user, root and runuser"
  end
  local dir = S.tmpdir(name or "pg")
  local pg = { dir = dir, data = dir .. "/data", log = dir .. "/log" }
  local out, status = H.run("chown postgres " .. dir .. " && cd " .. dir .. " && runuser -u postgres -- " .. PG ..
    "initdb -D " .. pg.data .. " -A trust -U postgres -N --no-instructions 2>&1")
  if status ~= 0 then
    H.run("rm -rf " .. dir)
    return nil, "initdb failed: " .. out
  end
  return pg
end

--- A copy of the stopped cluster pg, for a standby: { dir, data, log }.
function S.pg_copy(pg, name)
  local dir = S.tmpdir(name or "pg")
  local copy = { dir = dir, data = dir .. "/data", log = dir .. "/log" }
  H.run("chown postgres " .. dir .. " && cp -a " .. pg.data .. " " .. copy.data)
  return copy
end

--- Runs shell text as user postgres.
function S.as_postgres(cmd)
  return H.run("cd / && runuser -u postgres -- sh -c " .. H.quote(cmd) .. " 2>&1")
end

--- Starts the cluster pg on a free port, its Unix socket in pg.dir, with
-- extra "-c name=value" settings; returns pg (port, pid, socket) once it
-- listens, or nil and why. ready_line: the log line to await as well
-- (default "ready to accept connections"; false: none).
function S.pg_start(pg, settings, ready_line)
  pg.port = H.free_port()
  pg.socket = pg.dir .. "/.s.PGSQL." .. pg.port
  local extra = {}
  for k, v in pairs(settings or {}) do extra[#extra + 1] = "-c " .. k .. "=" .. v end
  pg.spawned = H.spawn(string.format(
    "cd %s && runuser -u postgres -- %spostgres -D %s -k %s -c listen_addresses=127.0.0.1 -p %d" ..
    " -c logging_collector=off %s 2>>%s", pg.dir, PG, pg.data, pg.dir, pg.port, table.concat(extra, " "),
    pg.log))
  -- listen mode tells when it listens (no connection, nothing logged); the
  -- log tells when it is done starting up
  pg.listening = tpu.wait_until_used { port = pg.port, host = "127.0.0.1", mode = H.quiet_mode,
                                       timeout_ms = 30000 }
  local line = ready_line == nil and "ready to accept connections" or ready_line
  local up = pg.listening and (not line or S.await(30000, function() return logged(pg.log, line) end))
  pg.pid = tonumber(slurp(pg.data .. "/postmaster.pid"):match("^(%d+)"))
  if not up or not pg.pid then
    local log = slurp(pg.log)
    S.pg_stop(pg)
    return nil, "postgres did not start: " .. log
  end
  return pg
end

--- Stops the cluster (if it runs) and removes its directory; returns
-- whether its port was seen free.
function S.pg_stop(pg)
  local ok = true
  if pg.pid then
    H.run("kill -INT " .. pg.pid)
    ok = tpu.wait_until_free { port = pg.port, host = "127.0.0.1", mode = H.quiet_mode, timeout_ms = 30000 }
    S.await(30000, function() return gone(pg.pid) end)
  end
  if pg.spawned then H.kill(pg.spawned) end
  H.run("rm -rf " .. pg.dir)
  return ok
end

--- redis-server -----------------------------------------------------------

local REDIS = "/usr/bin/redis-server"

--- Starts redis-server on a free loopback port in a directory of its own
-- (dir: reuse one, as a restart over a saved data set does), with extra
-- "--name value" arguments (%DIR% in them: the directory); returns { port, dir, log, pid } once it
-- listens, and, unless wait_ready is false, once it has loaded its data.
function S.redis_start(extra, dir, wait_ready)
  local f = io.open(REDIS)
  if not f then return nil, "needs redis-server (scripts/deps.sh installs it)" end
  f:close()
  local r = { dir = dir or S.tmpdir("redis"), port = H.free_port() }
  r.log = r.dir .. "/log"
  extra = (extra or ""):gsub("%%DIR%%", r.dir)
  H.run("rm -f " .. r.log)
  r.spawned = H.spawn(string.format("exec %s --port %d --bind 127.0.0.1 --dir %s --logfile %s" ..
    " --save '' --appendonly no --daemonize no %s", REDIS, r.port, r.dir, r.log, extra))
  local listening = tpu.wait_until_used { port = r.port, host = "127.0.0.1", mode = H.quiet_mode,
                                          timeout_ms = 20000 }
  local up = listening and (wait_ready == false or S.await(20000, function()
    return logged(r.log, "Ready to accept connections")
  end))
  if not up then
    local log = slurp(r.log)
    S.redis_stop(r, true)
    return nil, "redis-server did not start: " .. log
  end
  return r
end

function S.redis_stop(r, keep_dir)
  H.kill(r.spawned)
  tpu.wait_until_free { port = r.port, host = "127.0.0.1", mode = H.quiet_mode, timeout_ms = 20000 }
  if not keep_dir then H.run("rm -rf " .. r.dir) end
end

--- One command to a redis-server in RESP, its reply line (for setting
-- a data set up; the probes under test never use this).
function S.redis_command(port, ...)
  local socket = require "socket"
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(30)
  local parts = { "*" .. select("#", ...) }
  for i = 1, select("#", ...) do
    local a = tostring((select(i, ...)))
    parts[#parts + 1] = "$" .. #a
    parts[#parts + 1] = a
  end
  assert(c:send(table.concat(parts, "\r\n") .. "\r\n"))
  local line = c:receive("*l")
  c:close()
  return line
end

--- spec/fault_server.lua, a child that misbehaves on purpose: { port =
-- { [mode] = port }, closes = the file of how its "tail" clients closed,
-- stop = function }, once it listens.
function S.fault_server()
  local portfile = os.tmpname()
  os.remove(portfile)
  local child = H.spawn(H.lua_cmd("arg = { [1] = " .. string.format("%q", portfile) .. " } " ..
    "dofile(" .. string.format("%q", H.root .. "/spec/fault_server.lua") .. ")"))
  local f = { port = {}, closes = portfile .. ".closes" }
  S.await(10000, function()
    for _, line in ipairs(S.log_lines(portfile)) do
      local mode, p = line:match("^(%S+) (%d+)$")
      f.port[mode] = tonumber(p)
    end
    return f.port.never ~= nil
  end)
  function f.stop()
    H.kill(child)
    os.remove(portfile)
    os.remove(f.closes)
  end
  return f
end

--- Starts each server in turn (each a function returning it, or nil and
-- why, and the function that stops it); returns them all, or stops those
-- that started and returns nil and why the one failed.
function S.all(list)
  local started = {}
  for i, item in ipairs(list) do
    local server, why = item[1]()
    if not server then
      for k = i - 1, 1, -1 do list[k][2](started[k]) end
      return nil, why
    end
    started[i] = server
  end
  return started
end

--- A redis-server with a Unix socket too (r.dir .. "/redis.sock") and an
-- nginx serving spec/nginx/ready.conf: redis, nginx; or nil and why.
function S.redis_and_nginx()
  local servers, why = S.all {
    { function() return S.redis_start("--unixsocket %DIR%/redis.sock --unixsocketperm 777") end,
      S.redis_stop },
    { function() return S.nginx_start(slurp(H.root .. "/spec/nginx/ready.conf")) end,
      S.nginx_stop },
  }
  if not servers then return nil, why end
  return servers[1], servers[2]
end

--- nginx --------------------------------------------------------------------

local NGINX = "/usr/sbin/nginx"

--- Starts nginx with conf (a template whose ${NAME} are filled from vars
-- plus PREFIX, PORT, a free port, and ROOT, a readable copy of the
-- checkout (spec/readable.lua)) in a prefix of its own; returns
-- { prefix, port, pid } once it answers, or nil and why.
function S.nginx_start(conf, vars)
  local f = io.open(NGINX)
  if not f then return nil, "needs nginx (scripts/deps.sh installs nginx-light)" end
  f:close()
  local n = { prefix = S.tmpdir("nginx"), port = H.free_port() }
  H.run("mkdir -p " .. n.prefix .. "/logs " .. n.prefix .. "/tmp " .. n.prefix .. "/html")
  -- ROOT: a copy of the checkout that the workers (another user) may read
  local all = { PREFIX = n.prefix, PORT = n.port }
  if conf:find("${ROOT}", 1, true) then all.ROOT = R.tree(n.prefix) end
  for k, v in pairs(vars or {}) do all[k] = v end
  write(n.prefix .. "/nginx.conf", (conf:gsub("%${([%w_]+)}", function(k)
    return tostring(assert(all[k], k))
  end)))
  n.spawned = H.spawn(string.format("exec %s -p %s/ -c %s/nginx.conf -e %s/logs/error.log" ..
    " -g 'daemon off;' 2>%s/stderr.log", NGINX, n.prefix, n.prefix, n.prefix, n.prefix))
  local up = tpu.wait_until_used { port = n.port, host = "127.0.0.1", mode = H.quiet_mode,
                                   timeout_ms = 20000 }
  if up then
    -- nginx listens before it writes its pid file
    up = S.await(20000, function()
      n.pid = tonumber(slurp(n.prefix .. "/logs/nginx.pid"))
      return n.pid ~= nil
    end)
  end
  if not up then
    local why = slurp(n.prefix .. "/stderr.log") .. slurp(n.prefix .. "/logs/error.log")
    S.nginx_stop(n)
    return nil, "nginx did not start: " .. why
  end
  return n
end

function S.nginx_stop(n)
  if n.pid then
    H.run("kill -QUIT " .. n.pid .. " 2>/dev/null")
    S.await(20000, function() return gone(n.pid) end)
  end
  H.kill(n.spawned)
  H.run("rm -rf " .. n.prefix)
end

return S
