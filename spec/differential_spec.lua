-- One table of inputs through every transport (SPEC "Split of work": for
-- the same arguments the core module, tcp_port_used.uv with and without
-- the C core and tcp_port_used.ngx give the same first value and the same
-- code, or all raise alike). Each table run happens in a network
-- namespace of its own, so that a malformed host that some transport
-- mistook for a name never reaches a DNS server: one with both loopbacks,
-- one without IPv6 (a host of a family the machine lacks).
local H = require "helpers"
local C = require "calls"
local T = require "transports"

-- (nginx runs the LuaJIT core built for Linux; on the portable build,
-- which has no listen mode, that mode is spec/platform_spec.lua's)
local MODES = { "connect", "bind", "any" }
if not H.portable then MODES[#MODES + 1] = "listen" end

-- Calls that raise, the same in every transport.
local RAISING = {
  { port = 0, opts = {}, label = "port 0" },
  { port = "80", opts = {}, label = "port \"80\"" },
  { port = 80.5, opts = {}, label = "port 80.5" },
  { port = "open4", opts = { host = "" }, label = "empty host" },
  { port = "open4", opts = { host = "a\0b" }, label = "host with a NUL" },
  { port = "open4", opts = { host = 5 }, label = "host 5" },
  { port = "open4", opts = { mode = "nope" }, label = "mode nope" },
  { port = "open4", opts = { timeout_ms = -1 }, label = "timeout_ms -1" },
  { port = "open4", opts = { bogus = 1 }, label = "unknown option" },
  { port = "open4", opts = { retryTimeMs = 1 }, label = "Node's option name" },
  { port = "open4", opts = { proto = "sctp" }, label = "proto sctp" },
  { port = "open4", opts = { proto = "udp", mode = "connect" }, label = "UDP in mode connect" },
  { port = "open4", opts = { proto = "udp", mode = "any" }, label = "UDP in mode any" },
}

-- explain's rows: { fixture, options, the core's state }.
local EXPLAIN_LOCAL = {
  { "open4", { host = "127.0.0.1" }, "listening" },
  { "open4", {}, "listening" },
  { "open6", { host = "127.0.0.1" }, "other-family" },
  { "wild4", { host = "::1" }, "other-family" },
  { "refused4", { host = "127.0.0.1" }, "not-listening" },
  { "unbound", { host = "::1" }, "not-listening" },
  { "udp4", { host = "127.0.0.1" }, "other-proto" },
  { "udp4", { host = "127.0.0.1", proto = "udp" }, "listening" },
  { "open4", { host = "127.0.0.1", proto = "udp" }, "other-proto" },
}
local EXPLAIN_REMOTE = {
  { "open4", { host = "10.9.0.2" }, "listening" },
  { "open4", { host = "10.9.0.3" }, "refused" },
  { "open4", { host = "10.9.0.4", timeout_ms = 100 }, "filtered" },
}

local function explain_rows(list)
  local rows = {}
  for i, e in ipairs(list) do
    rows[i] = { fn = "explain", port = e[1], opts = e[2], expect = e[3],
                label = e[1] .. " " .. (e[2].host or "host omitted") ..
                  (e[2].proto and " proto=" .. e[2].proto or "") }
  end
  rows[#rows + 1] = { fn = "explain", port = 0, opts = {}, label = "port 0" }
  return rows
end

local RUNS = {
  {
    name = "with both loopbacks",
    setup = "",
    -- (on the portable build the core explains from the probe alone, and
    -- nginx's Linux core from the tables: spec/explain_spec.lua has it)
    extra = not H.portable and explain_rows(EXPLAIN_LOCAL) or nil,
    ports = { "open4", "open6", "wild4", "wild6", "dual6", "refused4", "refused6", "unbound" },
    udp_ports = { "udp4", "udp6", "udpwild4", "udpwild6", "udpdual6", "unbound" },
    hosts = { false, "127.0.0.1", "[127.0.0.1]", "::1", "[::1]", "localhost",
              "999.1.1.1", "1::2::3", "[::1", "1.2.3.4.5" },
    expect = {
      { "open4", "127.0.0.1", "connect", { v = "true" } },
      { "open6", "[::1]", "connect", { v = "true" } },
      { "refused4", "127.0.0.1", "connect", { v = "false" } },
      { "open4", "1::2::3", "connect", { v = "nil", code = "EAI_NONAME" } },
    },
  },
  {
    name = "without IPv6",
    setup = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; " ..
      "echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6; ",
    ports = { "open4", "wild4", "refused4", "unbound" },
    udp_ports = { "udp4", "udpwild4" },
    hosts = { false, "127.0.0.1", "::1", "[::1]", "localhost", "1::2::3" },
    expect = {
      { "open4", false, "connect", { v = "true" } },
      { "refused4", "127.0.0.1", "connect", { v = "false" } },
      -- (first: where IPv6 could not be disabled, the rest is pending)
      { "open4", "::1", "connect", { v = "nil", code = "EAFNOSUPPORT" }, pending = "IPv6 stayed on" },
    },
  },
  {
    -- Addresses of no interface, routed out through lo, where nft makes
    -- 10.9.0.2 reach the loopback's listeners, refuses 10.9.0.3 and drops
    -- 10.9.0.4: in nginx, the cosockets answer for them.
    name = "with hosts of another machine",
    needs = "nft",
    setup = "ip route add 10.9.0.0/24 dev lo && sysctl -qw net.ipv4.conf.all.route_localnet=1 && " ..
      "nft add table ip tpu && " ..
      "nft add chain ip tpu nat '{ type nat hook output priority -100; }' && " ..
      "nft add rule ip tpu nat ip daddr 10.9.0.2 dnat to 127.0.0.1 && " ..
      "nft add chain ip tpu out '{ type filter hook output priority 0; }' && " ..
      "nft add rule ip tpu out ip daddr 10.9.0.3 reject with tcp reset && " ..
      "nft add rule ip tpu out ip daddr 10.9.0.4 drop; ",
    ports = { "open4" },
    hosts = { "10.9.0.2", "10.9.0.3", "10.9.0.4" },
    timeout_ms = 100,
    extra = {
      explain_rows(EXPLAIN_REMOTE),
      -- cosockets cannot reset: these go through the C core
      { port = "open4", opts = { host = "10.9.0.2", close = "reset" }, label = "10.9.0.2 close=reset" },
      { port = "open4", opts = { host = "10.9.0.3", close = "reset" }, label = "10.9.0.3 close=reset" },
      { port = "open4", opts = { host = "10.9.0.4", close = "reset", timeout_ms = 100 },
        label = "10.9.0.4 close=reset" },
      -- readiness over a cosocket stream in nginx: a listener that never
      -- answers (the exchange times out reading), a refused and a dropped host
      { port = "open4", opts = { host = "10.9.0.2", ready = "redis" }, label = "10.9.0.2 ready=redis" },
      { port = "open4", opts = { host = "10.9.0.3", ready = "http" }, label = "10.9.0.3 ready=http" },
      { port = "open4", opts = { host = "10.9.0.4", ready = "postgres" }, label = "10.9.0.4 ready=postgres" },
    },
    expect = {
      { "open4", "10.9.0.2", "connect", { v = "true" } },
      { "open4", "10.9.0.3", "connect", { v = "false" } },
      { "open4", "10.9.0.4", "connect", { v = "nil", code = "ETIMEDOUT" } },
    },
  },
}

-- Without the C core, tcp_port_used.uv cannot ask the kernel who listens:
-- listen mode is an argument error there, naming the missing core.
local function agree_for(kind)
  return function(call, core, other)
    local a = call.args[1]
    -- and it explains from the probe alone: what the core explains from
    -- the kernel's tables is, to the probe, refused (or not bound)
    if kind == "uv_nocore" and call.fn == "explain" and core and core.v ~= "explain listening"
        and other and (other.v == "explain refused" or other.v == "explain not-listening") then
      return core.code == other.code
    end
    if kind == "uv_nocore" and a.mode == "listen" and core and not core.raised then
      return other ~= nil and other.raised ~= nil and
        other.raised:find("needs the C core", 1, true) ~= nil
    end
    return C.alike(core, other)
  end
end

-- The core's outcome for a call of the table: port (a fixture name),
-- host (false: omitted) and mode.
local function find(res, port, host, mode)
  for i, c in ipairs(res.calls) do
    local a = c.args[1]
    if c.fn == "check" and a.port == res.ports[port] and a.host == (host or nil) and a.mode == mode
        and c.label:find("^check " .. port) then
      return res.outcomes.core[i]
    end
  end
  error("no call for " .. port .. " " .. tostring(host) .. " " .. mode)
end

describe("every transport answers alike", function()
  if not H.netns_or_pending(it) then return end

  for _, run in ipairs(RUNS) do
    describe(run.name, function()
      local res, failure, absent
      setup(function()
        if run.needs and select(2, H.run("command -v " .. run.needs .. " >/dev/null")) ~= 0 then
          absent = run.needs .. " is not installed"
          return
        end
        local extra = {}
        for _, e in ipairs(RAISING) do extra[#extra + 1] = e end
        for _, e in ipairs(run.extra or {}) do
          if e[1] then
            for _, row in ipairs(e) do extra[#extra + 1] = row end
          else
            extra[#extra + 1] = e
          end
        end
        local t = { ports = run.ports, udp_ports = run.udp_ports, hosts = run.hosts, modes = MODES,
                    extra = extra, timeout_ms = run.timeout_ms }
        local out = H.lua_in_netns("require('transports').print_table_run(" .. C.literal(t) .. ")",
          run.setup)
        res = T.parse(out)
        if not res then failure = "the table run failed:\n" .. out end
      end)

      -- the spec of each transport, or why it cannot run
      local function ready(kind)
        if absent then return false, absent end
        assert(res, failure)
        if kind and res.missing[kind] then return false, res.missing[kind] end
        return true
      end

      it("the table exercises every kind of answer in the core", function()
        local ok, why = ready()
        if not ok then return pending(why) end
        local seen = {}
        for _, o in ipairs(res.outcomes.core) do
          if not (o.v or ""):find("^explain ") then seen[o.raised and "raised" or o.v] = true end
        end
        assert.same({ ["true"] = true, ["false"] = true, ["nil"] = true, raised = true }, seen)
        for _, e in ipairs(run.expect) do
          local o = find(res, e[1], e[2], e[3])
          local right = o.v == e[4].v and (e[4].code == nil or o.code == e[4].code)
          if not right and e.pending then return pending(e.pending .. ": " .. C.show(o)) end
          assert(right, string.format("%s host=%s mode=%s: %s, not %s", e[1], tostring(e[2]), e[3],
            C.show(o), C.show(e[4])))
        end
      end)

      it("explain's rows give the states they stage, in the core", function()
        local ok, why = ready()
        if not ok then return pending(why) end
        local n = 0
        for i, c in ipairs(res.calls) do
          if c.fn == "explain" and c.label ~= "explain port 0" then
            for _, e in ipairs(run.extra or {}) do
              for _, row in ipairs(e[1] and e or { e }) do
                if "explain " .. row.label == c.label and row.expect then
                  n = n + 1
                  assert.equals("explain " .. row.expect, res.outcomes.core[i].v, c.label .. ": " ..
                    C.show(res.outcomes.core[i]))
                end
              end
            end
          end
        end
        assert.is_true(n > 0 or not run.extra, "no explain rows ran")
      end)

      for _, kind in ipairs { "uv", "uv_nocore", "ngx" } do
        it(T.NAMES[kind] .. " gives the core's first value and code", function()
          local ok, why = ready(kind)
          if not ok then return pending(why) end
          local other = res.outcomes[kind]
          assert.equals(#res.calls, #other)
          assert(not other.exit, T.NAMES[kind] .. " answered every call, then its process failed: " ..
            tostring(other.exit))
          local diff = C.diff(res.calls, "core", res.outcomes.core, kind, other, agree_for(kind))
          assert(diff == "", diff)
        end)

        -- SPEC "Split of work": a message is "<operation> <where>: <text>",
        -- the same from every transport.
        it(T.NAMES[kind] .. " words each error as the core does", function()
          local ok, why = ready(kind)
          if not ok then return pending(why) end
          local diff = C.diff(res.calls, "core", res.outcomes.core, kind, res.outcomes[kind],
            function(_, a, b)
              if not (a and b and a.v == "nil" and b.v == "nil" and a.code == b.code) then return true end
              return a.err == b.err
            end)
          assert(diff == "", diff)
        end)
      end
    end)
  end
end)
