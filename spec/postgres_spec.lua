-- A real PostgreSQL 15 (Debian's package) in a throwaway cluster: listen
-- mode leaves nothing in its log, where a connect probe that closes with a
-- reset leaves a line per probe (the control that shows the log would tell).
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

local BIN = "/usr/lib/postgresql/15/bin/"
local RESET_LINE = "could not receive data from client: Connection reset by peer"

local function log_lines(path)
  local lines = {}
  local f = io.open(path)
  if not f then return lines end
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

-- Polls until cond() holds or ms pass; returns whether it held.
local function await(ms, cond)
  local deadline = core.now() + ms
  while not cond() do
    if core.now() > deadline then return false end
    core.sleep(10)
  end
  return true
end

-- Makes the cluster and starts the server; returns a table describing it,
-- or nil and why it cannot run here.
local function start_postgres()
  local _, rc = H.run("[ \"$(id -u)\" = 0 ] && command -v runuser >/dev/null && id postgres >/dev/null 2>&1" ..
    " && [ -x " .. BIN .. "initdb ] && [ -x " .. BIN .. "postgres ]")
  if rc ~= 0 then
    return nil, "needs Debian's postgresql 15, the postgres user, root and runuser"
  end
  local dir = H.run("mktemp -d /tmp/tpu-pg.XXXXXX"):gsub("%s+$", "")
  local pg = { dir = dir, log = dir .. "/log" }
  local out, status = H.run("chown postgres " .. dir .. " && runuser -u postgres -- " .. BIN ..
    "initdb -D " .. dir .. "/data -A trust -U postgres -N --no-instructions 2>&1")
  if status ~= 0 then
    os.execute("rm -rf " .. dir)
    return nil, "initdb failed: " .. out
  end
  pg.port = H.free_port()
  pg.spawned = H.spawn(string.format(
    "runuser -u postgres -- %spostgres -D %s/data -k %s -c listen_addresses=127.0.0.1 -p %d" ..
    " -c logging_collector=off 2>>%s", BIN, dir, dir, pg.port, pg.log))
  -- our own listen-mode wait tells when it listens; the log tells when it
  -- is done starting up (connections before that are refused and logged)
  pg.listening = tpu.wait_until_used { port = pg.port, host = "127.0.0.1", mode = "listen",
                                       timeout_ms = 30000 }
  local ready = pg.listening and await(30000, function()
    for _, line in ipairs(log_lines(pg.log)) do
      if line:find("ready to accept connections", 1, true) then return true end
    end
    return false
  end)
  if not ready then
    local log = table.concat(log_lines(pg.log), "\n")
    H.kill(pg.spawned)
    os.execute("rm -rf " .. dir)
    return nil, "postgres did not start: " .. log
  end
  local f = assert(io.open(dir .. "/data/postmaster.pid"))
  pg.pid = f:read("*n")
  f:close()
  return pg
end

local function stop_postgres(pg)
  os.execute("kill -INT " .. pg.pid)
  local ok = tpu.wait_until_free { port = pg.port, host = "127.0.0.1", mode = "listen", timeout_ms = 30000 }
  await(30000, function()
    local r = os.execute("kill -0 " .. pg.pid .. " 2>/dev/null")
    return r ~= true and r ~= 0 -- 5.1 returns the status, 5.2+ true or nil
  end)
  H.kill(pg.spawned)
  os.execute("rm -rf " .. pg.dir)
  return ok
end

describe("a real PostgreSQL server", function()
  local pg, why = start_postgres()
  if not pg then
    pending(why)
    return
  end
  teardown(function() assert.is_true(stop_postgres(pg)) end)

  it("is seen listening, and owned by its postmaster", function()
    assert.is_true(pg.listening)
    local h = assert(tpu.owner(pg.port))[1]
    assert.are.equal(pg.pid, h.pid)
    assert.matches("postgres", h.command, 1, true)
  end)

  it("logs nothing for listen-mode probes and graceful ones, a line per reset probe", function()
    local base = #log_lines(pg.log)
    for _ = 1, 200 do
      assert.is_true(tpu.check { port = pg.port, mode = "listen" })
    end
    assert.is_true(tpu.wait_until_used { port = pg.port, mode = "listen", timeout_ms = 5000 })
    for _ = 1, 20 do
      assert.is_true(tpu.check { port = pg.port, host = "127.0.0.1", close = "graceful" })
    end
    for _ = 1, 20 do
      assert.is_true(tpu.check { port = pg.port, host = "127.0.0.1", close = "reset" })
    end
    -- the control: the reset probes' lines arrive (each from its own
    -- backend process, so they are awaited, not assumed)
    await(10000, function() return #log_lines(pg.log) >= base + 20 end)
    local new = {}
    for i, line in ipairs(log_lines(pg.log)) do
      if i > base then new[#new + 1] = line end
    end
    local resets = 0
    for _, line in ipairs(new) do
      -- any other line (an "incomplete startup packet", a connection
      -- record) would come from the listen-mode or graceful probes
      assert.matches(RESET_LINE, line, 1, true)
      resets = resets + 1
    end
    assert.is_true(resets >= 15 and resets <= 20, resets .. " reset lines for 20 reset probes")
  end)
end)
