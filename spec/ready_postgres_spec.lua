-- ready = "postgres" against PostgreSQL 15 throwaway clusters (Debian's
-- package, run as user postgres) on ports picked at run time: a primary
-- with trust and scram-sha-256 host authentication, reached over TCP and
-- over its Unix socket, and a standby kept in recovery (hot_standby =
-- off). The probes leave no line in the server's log; the controls (a
-- probe that resets, one that names a missing role) do, so the log
-- check can fail.
local tpu = require "tcp_port_used"
local S = require "servers"
local H = require "helpers"

local HBA = [[
local all all trust
local replication all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
]]

local function start()
  local pg, why = S.pg_init("pg-ready")
  if not pg then return nil, why end
  -- the standby is a copy of the cluster before its first start, told to
  -- stay in recovery: with nothing to recover from, it stays there
  local standby = S.pg_copy(pg, "pg-standby")
  S.write(standby.data .. "/standby.signal", "")
  H.run("chown postgres " .. standby.data .. "/standby.signal")
  S.write(pg.data .. "/pg_hba.conf", HBA)
  local ok
  ok, why = S.pg_start(pg)
  if not ok then
    S.pg_stop(standby)
    return nil, why
  end
  local out, rc = S.as_postgres(string.format("%s/psql -h %s -p %d -U postgres -qAt -c %s",
    "/usr/lib/postgresql/15/bin", pg.dir, pg.port,
    H.quote("SET password_encryption = 'scram-sha-256'; CREATE ROLE prober LOGIN PASSWORD 'secret'")))
  if rc ~= 0 then
    S.pg_stop(pg)
    S.pg_stop(standby)
    return nil, "psql failed: " .. out
  end
  ok, why = S.pg_start(standby, { hot_standby = "off" }, "entering standby mode")
  if not ok then
    S.pg_stop(pg)
    return nil, why
  end
  -- it says "starting up" until its startup process has begun recovery:
  -- psql tells when it has
  local said
  if not S.await(30000, function()
    said = S.as_postgres(string.format("/usr/lib/postgresql/15/bin/psql -h %s -p %d -U postgres " ..
      "-qAt -c 'SELECT 1'", standby.dir, standby.port))
    return said:find("not accepting connections", 1, true) ~= nil
  end) then
    S.pg_stop(pg)
    S.pg_stop(standby)
    return nil, "the standby did not settle in recovery: " .. said
  end
  return pg, standby
end

describe("ready = \"postgres\" against real PostgreSQL 15 clusters", function()
  local pg, standby = start()
  if not pg then
    pending(standby)
    return
  end
  teardown(function()
    assert.is_true(S.pg_stop(pg))
    assert.is_true(S.pg_stop(standby))
  end)

  local kinds = {
    ["TCP, trust"] = { port = pg.port, host = "127.0.0.1", ready = "postgres" },
    ["TCP, scram-sha-256"] = { port = pg.port, host = "127.0.0.1", ready = "postgres",
                               user = "prober", database = "postgres" },
    ["Unix socket, trust"] = { unix = pg.socket, ready = "postgres" },
    -- a password method asks before it looks the role up
    ["TCP, scram-sha-256, a role that does not exist"] = { port = pg.port, host = "127.0.0.1",
      ready = "postgres", user = "nobody_there" },
  }

  it("is ready with trust and scram-sha-256, over TCP and over the Unix socket", function()
    for kind, o in pairs(kinds) do
      assert.same({ true }, { tpu.check(o) }, kind)
    end
    assert.is_true(tpu.wait_until_used { unix = pg.socket, ready = "postgres" })
    assert.is_true(tpu.wait_until_used { ports = { pg.port }, ready = "postgres" })
  end)

  it("adds no line to the log for 100 probes of each kind; the controls do", function()
    local base = #S.log_lines(pg.log)
    for kind, o in pairs(kinds) do
      for _ = 1, 100 do assert.is_true(tpu.check(o), kind) end
    end
    -- a backend logs as it exits: the controls' lines show that the
    -- probes' lines, had there been any, would be in by then
    local control = { port = pg.port, host = "127.0.0.1", ready = "postgres", user = "prober",
                      close = "reset" }
    assert.is_true(tpu.check(control))
    assert.is_true(tpu.check { unix = pg.socket, ready = "postgres", user = "nobody_here" })
    assert.is_true(S.await(10000, function()
      local new = table.concat(S.lines_after(pg.log, base), "\n")
      return new:find("Connection reset by peer", 1, true) and new:find("nobody_here", 1, true)
    end), "the controls' lines did not come")
    -- exactly the controls' lines: one reset, one missing role
    local new = S.lines_after(pg.log, base)
    local resets, roles = 0, 0
    for _, line in ipairs(new) do
      if line:find("Connection reset by peer", 1, true) then resets = resets + 1 end
      if line:find('role "nobody_here" does not exist', 1, true) then roles = roles + 1 end
    end
    assert.same({ 1, 1, 2 }, { resets, roles, #new }, table.concat(new, "\n"))
  end)

  it("ends a trust login with Terminate: the server counts no abandoned session", function()
    -- sessions and sessions_abandoned (a client gone without Terminate)
    -- of database postgres, as the backends report them when they exit
    local function stats()
      local out = S.as_postgres(string.format("/usr/lib/postgresql/15/bin/psql -h %s -p %d " ..
        "-U postgres -qAt -c %s", pg.dir, pg.port, H.quote("SELECT sessions || ' ' || " ..
        "sessions_abandoned FROM pg_stat_database WHERE datname = 'postgres'")))
      local n, abandoned = out:match("^(%d+) (%d+)")
      return tonumber(n), tonumber(abandoned), out
    end
    local n0, a0, out = stats()
    assert(n0, out)
    for _ = 1, 20 do assert.is_true(tpu.check(kinds["TCP, trust"])) end
    for _ = 1, 20 do assert.is_true(tpu.check(kinds["Unix socket, trust"])) end
    local n1, a1
    assert.is_true(S.await(10000, function()
      n1, a1 = stats()
      return n1 and n1 >= n0 + 41
    end), "the sessions were not counted")
    assert.are.equal(a0, a1)
  end)

  it("says a standby without hot standby is not ready (57P03) while connect says true", function()
    local ok, reason = tpu.check { port = standby.port, host = "127.0.0.1", ready = "postgres" }
    assert.is_false(ok)
    assert.are.equal("the database system is not accepting connections", reason)
    assert.same({ false, "the database system is not accepting connections" },
      { tpu.check { unix = standby.socket, ready = "postgres" } })
    assert.is_true(tpu.check { port = standby.port, host = "127.0.0.1" })
    -- the server logs each refusal itself (what docs/readiness.md says)
    assert.is_true(S.await(10000, function()
      return S.logged(standby.log, "FATAL:  the database system is not accepting connections")
    end))
    local waited, msg, code, e = tpu.wait_until_used { port = standby.port, host = "127.0.0.1",
                                                   ready = "postgres", timeout_ms = 300 }
    assert.same({ nil, "ETIMEDOUT", "not-ready" }, { waited, code, e.state })
    assert.matches("but is not ready: the database system is not accepting connections" .. H.NO_TABLES ..
      "$", msg)
  end)

  it("explains the standby as not-ready, naming the postmaster, as its wait's timeout does", function()
    if H.portable then return pending("the portable build reads no socket tables (explain_spec)") end
    local e = tpu.explain { port = standby.port, host = "127.0.0.1", ready = "postgres" }
    assert.are.equal("not-ready", e.state)
    assert.are.equal(1, #e.listeners)
    local l = e.listeners[1]
    assert.same({ "127.0.0.1", standby.port, standby.pid, "postgres" },
      { l.address, l.port, l.pid, l.user })
    assert.matches("^postgres %(pid " .. standby.pid .. ", user postgres%) listens on 127%.0%.0%.1:" ..
      standby.port .. " but is not ready: the database system is not accepting connections$", e.text)
    local _, msg, code, w = tpu.wait_until_used { port = standby.port, host = "127.0.0.1",
                                                  ready = "postgres", timeout_ms = 300 }
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal(e.text, w.text)
    assert.are.equal("timeout after 300 ms waiting for 127.0.0.1:" .. standby.port .. ": " .. e.text, msg)
    -- and without ready, the same server simply accepts
    assert.are.equal("listening", tpu.explain { port = standby.port, host = "127.0.0.1" }.state)
  end)

  it("leaves no descriptor behind", function()
    local before = H.fd_count()
    for _, o in pairs(kinds) do
      for _ = 1, 10 do tpu.check(o) end
    end
    tpu.check { port = standby.port, host = "127.0.0.1", ready = "postgres" }
    assert.are.equal(before, H.fd_count())
  end)
end)
