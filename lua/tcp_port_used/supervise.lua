--- The command line's `run`: readiness for supervisors. It starts a
-- command as its child, waits until the child's process tree listens,
-- then tells the supervisor (systemd's NOTIFY_SOCKET, s6's
-- notification-fd) and stays the child's parent: it forwards the
-- signals a supervisor sends, reaps, and exits with the child's status
-- (128+N for a signal). The primitives are C (tcp_port_used.exec); the
-- looks are tcp_port_used.procs'.
local tpu = require "tcp_port_used"
local procs = require "tcp_port_used.procs"
local loop = require "tcp_port_used.loop"
local core = require "tcp_port_used.core"
local x = require "tcp_port_used.exec"

local M = {}

local SIG = x.SIG
-- What a supervisor (or a terminal) sends that the child must hear.
local FORWARDED = { SIG.TERM, SIG.INT, SIG.HUP, SIG.QUIT, SIG.USR1, SIG.USR2, SIG.WINCH }
-- How long a child stopped at the timeout has after SIGTERM.
M.KILL_AFTER_MS = 5000

local EXIT_TIMEOUT, EXIT_USAGE = 1, 2

--- The notification asked for: nil (none), { systemd = address } or
-- { s6 = fd }; or raises a usage error through ctx.
local function notify_option(ctx, v)
  if v == nil or v == "none" then return nil end
  if v == "systemd" then
    local addr = os.getenv("NOTIFY_SOCKET")
    if not addr or addr == "" then ctx.usage_error("--notify systemd: NOTIFY_SOCKET is not set") end
    return { systemd = addr }
  end
  local fd = v:match("^s6=(%d+)$")
  if fd then return { s6 = tonumber(fd) } end
  ctx.usage_error("--notify takes systemd, s6=FD or none, not '" .. v .. "'")
end

local function exit_status(how, n)
  if how == "killed" then return 128 + n end
  return n
end

-- A host to ask for a listener's address: a wildcard is reached on the
-- loopback of its family.
local WILDCARD = { ["0.0.0.0"] = "127.0.0.1", ["::"] = "::1" }

--- Whether the listeners in list answer the readiness exchange `ready`
-- (a kind: http, redis, postgres), every awaited port once.
local function ready_now(list, ready, ports)
  local asked = {}
  for _, l in ipairs(list) do
    if l.proto == "tcp" and not asked[l.port] and (not ports or ports[l.port]) then
      asked[l.port] = true
      if tpu.check { port = l.port, host = WILDCARD[l.address] or l.address, ready = ready }
          ~= true then
        return false
      end
    end
  end
  return true
end

local describe = procs.describe

local function write_ports_file(path, list)
  local seen, lines = {}, {}
  for _, l in ipairs(list) do
    if not seen[l.port] then
      seen[l.port] = true
      lines[#lines + 1] = tostring(l.port)
    end
  end
  -- a reader never sees half a file: the whole file appears at once
  local tmp = path .. ".tmp" .. tostring(core.now()):gsub("%D", "")
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

--- run(o, ctx): o the command line's options (command, notify,
-- ports_file, print_ports, listeners, port, proto, ready, timeout when
-- given); ctx { say, usage_error, parse_port, parse_resource }. Returns the exit status.
function M.run(o, ctx)
  local say = ctx.say
  if not o.command then ctx.usage_error("run needs -- COMMAND [ARGS...]") end
  local notify = notify_option(ctx, o.notify)
  local count = 1
  if o.listeners then
    count = tonumber(o.listeners:match("^%d+$") or "")
    if not count or count < 1 or count > 65535 then
      ctx.usage_error("--listeners takes a number in 1..65535, not '" .. o.listeners .. "'")
    end
    if o.port then ctx.usage_error("give --listeners or --port, not both") end
  end
  local ports, wanted_ports
  if o.port then
    ports, wanted_ports = {}, {}
    for i, p in ipairs(o.port) do
      ports[i] = ctx.parse_port("--port", p)
      wanted_ports[ports[i]] = true
    end
  end
  -- --ready URL: that resource must be ready too (a port of the child's
  -- named in full, an HTTP path, a PostgreSQL user)
  local ready_url
  if o.ready and o.ready:find("://", 1, true) then
    local t = ctx.parse_resource(o.ready)
    ready_url = { port = t.port, host = t.host, ready = t.ready, path = t.path, user = t.user,
                  database = t.database }
  elseif o.ready and not ({ http = true, redis = true, postgres = true })[o.ready] then
    ctx.usage_error("--ready takes http, redis, postgres or a URL, not '" .. o.ready .. "'")
  end
  if o.ready and o.proto == "udp" then ctx.usage_error("--ready needs TCP, not --udp") end
  if notify and notify.s6 then
    local ok = x.keep_from_children(notify.s6)
    if not ok then ctx.usage_error("--notify s6=" .. notify.s6 .. ": descriptor not open") end
  end
  local timeout = o.timeout

  assert(x.catch(FORWARDED))
  local pid, code = x.spawn(o.command)
  if not pid then
    say("cannot start ", o.command[1], ": ", code == "ENOENT" and "command not found"
      or code == "EACCES" and "permission denied" or code)
    return code == "ENOENT" and 127 or 126
  end

  -- Forwards what arrived; the child's status once it has ended.
  local function pump(ms)
    for _, sig in ipairs(x.events(ms)) do
      if sig ~= SIG.CHLD then x.kill(pid, sig) end
    end
    local how, n = x.reap(pid)
    if how then return exit_status(how, n) end
  end

  local opts = { pid = pid, tree = true, proto = o.proto == "udp" and "udp" or "tcp" }
  local start = core.now()
  local deadline = timeout and start + timeout or math.huge
  local list, last = nil, {}
  while true do
    local status = pump(0)
    if status then
      say(o.command[1], " exited (status ", status, ") before it listened")
      return status
    end
    local l, err, lcode = procs.listeners(opts)
    if l then
      last = l
      local enough
      if ports then
        local have = {}
        for _, e in ipairs(l) do have[e.port] = true end
        enough = true
        for _, p in ipairs(ports) do enough = enough and have[p] == true end
      else
        enough = #l >= count
      end
      if enough and ready_url then
        enough = tpu.check(ready_url) == true
      elseif enough and o.ready then
        enough = ready_now(l, o.ready, wanted_ports)
      end
      if enough then
        list = l
        break
      end
    elseif lcode ~= "ESRCH" then
      say(err)
      x.kill(pid, SIG.TERM)
      return EXIT_USAGE
    end
    local t = core.now()
    if t >= deadline then break end
    status = pump(math.min(loop.interval(nil, t - start), deadline - t))
    if status then
      say(o.command[1], " exited (status ", status, ") before it listened")
      return status
    end
  end

  if not list then
    local want = procs.wanted { ports = ports, count = count }
    say(require("tcp_port_used.words").listeners_timeout(pid, timeout,
      describe(last), want .. (o.ready and " ready (" .. o.ready .. ")" or "")))
    x.kill(pid, SIG.TERM)
    local t = core.now()
    while core.now() - t < M.KILL_AFTER_MS do
      if pump(50) then return EXIT_TIMEOUT end
    end
    x.kill(pid, SIG.KILL)
    while not pump(50) do end
    return EXIT_TIMEOUT
  end

  local where = describe(list)
  if o.ports_file then
    local ok, err = write_ports_file(o.ports_file, list)
    if not ok then say("--ports-file: ", err) end
  end
  if o.print_ports then
    for _, l in ipairs(list) do io.stderr:write(l.port, "\n") end
  end
  if notify and notify.systemd then
    -- MAINPID is this process: it stays the main process, so that
    -- systemd sees the real exit status (it cannot reap a main PID that
    -- is not its child) and its stop signal reaches us to forward
    local ok, err = x.notify(notify.systemd, "READY=1\nMAINPID=" .. x.getpid() ..
      "\nSTATUS=listening on " .. where .. "\n")
    if not ok then say("--notify systemd: cannot send to ", notify.systemd, ": ", err) end
  elseif notify and notify.s6 then
    local ok, err = x.write_close(notify.s6, "\n")
    if not ok then say("--notify s6: ", err) end
  end
  say(o.command[1], " (pid ", pid, ") listening on ", where)

  while true do
    local status = pump(3600000)
    if status then return status end
  end
end

return M
