-- A real PostgreSQL 15 (Debian's package) in a throwaway cluster: listen
-- mode leaves nothing in its log, where a connect probe that closes with a
-- reset leaves a line per probe (the control that shows the log would tell).
-- (The portable build has no listen mode: bind mode stands in for it.)
local tpu = require "tcp_port_used"
local H = require "helpers"
local S = require "servers"

local QUIET = H.quiet_mode

local RESET_LINE = "could not receive data from client: Connection reset by peer"

local log_lines, await = S.log_lines, S.await

local function start_postgres()
  local pg, why = S.pg_init("pg")
  if not pg then return nil, why end
  return S.pg_start(pg)
end

describe("a real PostgreSQL server", function()
  local pg, why = start_postgres()
  if not pg then
    pending(why)
    return
  end
  teardown(function() assert.is_true(S.pg_stop(pg)) end)

  it("is seen listening, and owned by its postmaster", function()
    assert.is_true(pg.listening)
    if H.portable then return end
    local h = assert(tpu.owner(pg.port))[1]
    assert.are.equal(pg.pid, h.pid)
    assert.matches("postgres", h.command, 1, true)
  end)

  it("logs nothing for listen-mode probes and graceful ones, a line per reset probe", function()
    local base = #log_lines(pg.log)
    for _ = 1, 200 do
      assert.is_true(tpu.check { port = pg.port, mode = QUIET })
    end
    assert.is_true(tpu.wait_until_used { port = pg.port, mode = QUIET, timeout_ms = 5000 })
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
