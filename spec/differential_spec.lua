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
local I = require "hostile_inputs"

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

-- The callback forms (on_used, on_free) of the two adapters: the core
-- module has none, so tcp_port_used.uv with the C core is the base the
-- others must match. Each raises alike, or calls back exactly once, after
-- it has returned, with the same values. (port: the form with the port
-- as argument 1; cb: what stands in for the callback; { fn = "raise" }:
-- a function that raises.)
local CALLBACKS = {
  { fn = "on_used", port = 0, opts = {}, label = "port 0" },
  { fn = "on_used", port = "80", label = "port \"80\", opts nil" },
  { fn = "on_free", port = "open4", opts = 5, label = "opts 5" },
  { fn = "on_used", port = "open4", opts = { port = "open4" }, label = "port in opts too" },
  { fn = "on_free", port = "open4", opts = { ports = { "open6" } }, label = "ports in opts too" },
  { fn = "on_used", port = "open4", opts = {}, no_cb = true, label = "no callback" },
  { fn = "on_used", opts = { port = "open4" }, cb = "x", label = "callback \"x\"" },
  { fn = "on_used", opts = { port = "open4", bogus = 1 }, label = "unknown option" },
  { fn = "on_used", opts = {}, label = "no port" },
  { fn = "on_used", opts = { port = "open4", ports = { "open6" } }, label = "port and ports" },
  { fn = "on_free", port = "open4", opts = { mode = "nope" }, label = "mode nope" },
  { fn = "on_used", opts = { port = "open4", in_use = false }, label = "in_use false" },
  { fn = "on_used", opts = { port = "open4", on_retry = "x" }, label = "on_retry \"x\"" },
  -- from here on each calls back (with the values of the matching wait,
  -- run too, except where a function of the caller's raises)
  { fn = "on_used", port = "open4", opts = { timeout_ms = 2000 }, label = "open4", answers = true },
  { fn = "on_used", port = "open6", label = "open6, opts nil" },
  { fn = "on_used", opts = { port = "refused4", host = "127.0.0.1", timeout_ms = 200 },
    label = "refused4 until the timeout" },
  { fn = "on_free", port = "refused4", opts = { host = "127.0.0.1" }, label = "refused4" },
  { fn = "on_free", opts = { port = "open4", host = "127.0.0.1", timeout_ms = 200 },
    label = "open4 until the timeout" },
  { fn = "on_used", opts = { ports = { "open4", "wild4" }, host = "127.0.0.1" }, label = "ports open4, wild4" },
  { fn = "on_used", port = "open4", opts = { host = "1::2::3", timeout_ms = 200 }, label = "host 1::2::3" },
  { fn = "on_used", port = "open4", opts = { host = "127.0.0.1", mode = "bind" },
    label = "open4 mode bind (answered at once)" },
  { fn = "on_free", port = "unbound", opts = { host = "::1", mode = "bind" }, label = "unbound mode bind" },
  { fn = "on_used", opts = { port = "udp4", proto = "udp", mode = "bind", host = "127.0.0.1" },
    label = "udp4 mode bind" },
  { fn = "on_used", opts = { port = "refused4", host = "127.0.0.1", timeout_ms = 2000, retry_ms = 50,
                             on_retry = { fn = "raise" } }, label = "on_retry raises", wait_raises = true },
  { fn = "on_used", opts = { port = "refused4", host = "127.0.0.1", timeout_ms = 2000,
                             sleep = { fn = "raise" } }, label = "sleep raises", wait_raises = true },
}
if not H.portable then
  CALLBACKS[#CALLBACKS + 1] = { fn = "on_used", port = "open4", opts = { host = "127.0.0.1", mode = "listen" },
                                label = "open4 mode listen" }
end
local answering = false
for _, e in ipairs(CALLBACKS) do
  answering = answering or e.answers
  e.answers, e.with_wait = nil, answering and not e.wait_raises
end

-- What the base says for some of CALLBACKS: { label, outcome fields }.
local CALLBACK_EXPECT = {
  { "port in opts too", raised = "bad argument #2 to 'on_used' (opts must not hold port or ports " ..
    "when the port is argument #1)" },
  { "ports in opts too", raised = "bad argument #2 to 'on_free' (opts must not hold port or ports " ..
    "when the port is argument #1)" },
  { "no callback", raised = "bad argument #3 to 'on_used' (callback must be a function, got nil)" },
  { "open4", v = "true", calls = 1 },
  { "refused4 until the timeout", v = "nil", code = "ETIMEDOUT", calls = 1 },
  { "open4 mode bind (answered at once)", v = "true", calls = 1 },
  { "on_retry raises", v = "nil", err = "raised by the caller's function", calls = 1 },
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
    callbacks = CALLBACKS,
    callback_expect = CALLBACK_EXPECT,
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
    -- the callback forms over cosockets in nginx's timers
    callbacks = {
      { fn = "on_used", port = "open4", opts = { host = "10.9.0.2" }, label = "10.9.0.2", with_wait = true },
      { fn = "on_free", opts = { port = "open4", host = "10.9.0.3" }, label = "10.9.0.3", with_wait = true },
      { fn = "on_used", port = "open4", opts = { host = "10.9.0.4", timeout_ms = 300 }, label = "10.9.0.4",
        with_wait = true },
    },
    callback_expect = {
      { "10.9.0.2", v = "true", calls = 1 },
      { "10.9.0.3", v = "true", calls = 1 },
      { "10.9.0.4", v = "nil", code = "ETIMEDOUT", calls = 1 },
    },
    expect = {
      { "open4", "10.9.0.2", "connect", { v = "true" } },
      { "open4", "10.9.0.3", "connect", { v = "false" } },
      { "open4", "10.9.0.4", "connect", { v = "nil", code = "ETIMEDOUT" } },
    },
  },
}

local function is_callback(call)
  return call.callback ~= nil or call.fn == "on_used" or call.fn == "on_free"
end

-- The outcomes each kind must match: the core's, and for the callback
-- forms tcp_port_used.uv's (nil where it cannot run here).
local function base_of(res)
  local base = {}
  for i, c in ipairs(res.calls) do
    if is_callback(c) then
      base[i] = res.outcomes.uv and res.outcomes.uv[i]
    else
      base[i] = res.outcomes.core[i]
    end
  end
  return base
end
-- The hostile-input table (spec/hostile_inputs.lua): legacy IPv4
-- literals, times outside 0..1e12, NaN, negative zero, NULs, fragments.
local RAISES = {}
for _, row in ipairs(I.rows(MODES)) do
  if row.raises then RAISES[(row.fn or "check") .. " " .. row.label] = row.raises end
end
RUNS[#RUNS + 1] = {
  name = "with hostile input",
  setup = "",
  ports = { "open4", "refused4", "unbound" },
  udp_ports = { "udp4" },
  hosts = {},
  extra = I.rows(MODES),
  expect = {},
  -- what the core must answer (the others are held to the core's answer)
  core = function(res)
    for i, c in ipairs(res.calls) do
      local o, h = res.outcomes.core[i], c.args[1].host
      for _, l in ipairs(I.LEGACY) do
        if h == l[1] and c.fn == "check" then
          assert(o.v == "nil" and o.code == "EAI_NONAME", c.label .. ": " .. C.show(o))
          assert.equals("resolve " .. h .. ": not a canonical IPv4 address (" .. l[2] .. ")", o.err)
        end
      end
      local raises = RAISES[c.label]
      if raises then
        assert(o.raised and o.raised:find(raises, 1, true), c.label .. ": " .. C.show(o) ..
          ", not an argument error saying " .. raises)
      end
    end
  end,
}

-- Without the C core, tcp_port_used.uv cannot ask the kernel who listens:
-- listen mode is an argument error there, naming the missing core.
local function agree_for(kind)
  return function(call, core, other)
    if is_callback(call) and (kind == "uv" or core == nil) then return true end
    local a = type(call.args[1]) == "table" and call.args[1] or type(call.args[2]) == "table" and call.args[2] or {}
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
                    extra = extra, timeout_ms = run.timeout_ms, callbacks = run.callbacks }
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

      if run.callback_expect then
        it("the callback forms give what is expected in " .. T.NAMES.uv, function()
          local ok, why = ready("uv")
          if not ok then return pending(why) end
          local seen = {}
          for i, c in ipairs(res.calls) do
            if is_callback(c) then
              local o = res.outcomes.uv[i]
              seen[o.raised and "raised" or o.v] = true
              for _, e in ipairs(run.callback_expect) do
                if c.label == c.fn .. " " .. e[1] then
                  for k, want in pairs(e) do
                    if k ~= 1 then
                      assert(o[k] == want, string.format("%s: %s is %s, not %s (%s)", c.label, k,
                        tostring(o[k]), tostring(want), C.show(o)))
                    end
                  end
                  seen[e[1]] = true
                end
              end
            end
          end
          for _, e in ipairs(run.callback_expect) do assert(seen[e[1]], "no call " .. e[1]) end
        end)
      end

      if run.callbacks then
        -- SPEC "adapters": the callback gets the values the matching wait returns
        it("each callback form gets what the core's matching wait returns", function()
          local ok, why = ready("uv")
          if not ok then return pending(why) end
          local callbacks, n = {}, 0
          for i, c in ipairs(res.calls) do
            if c.twin then callbacks[i], n = res.outcomes.uv[c.twin], n + 1 end
          end
          local want = 0
          for _, e in ipairs(run.callbacks) do
            if e.with_wait then want = want + 1 end
          end
          assert(n == want and n > 0, n .. " callbacks have a matching wait, not " .. want)
          local diff = C.diff(res.calls, "core's wait", res.outcomes.core, "uv's callback", callbacks,
            function(call, wait, cb)
              return not call.twin or cb.v == wait.v and cb.code == wait.code and cb.err == wait.err
            end)
          assert(diff == "", diff)
        end)
      end
      if run.core then
        it("the core answers the table as issue 17 says", function()
          local ok, why = ready()
          if not ok then return pending(why) end
          run.core(res)
        end)
      end

      -- a public function called straight from pcall has no caller: any
      -- "file.lua:N:" in what it raised or returned is a position inside
      it("no transport names a position inside the code in any message", function()
        local ok, why = ready()
        if not ok then return pending(why) end
        local leaks = {}
        for _, kind in ipairs(T.KINDS) do
          for i, o in ipairs(res.outcomes[kind] or {}) do
            if o.leak then
              leaks[#leaks + 1] = kind .. ": " .. res.calls[i].label .. ": " .. C.show(o) .. " at " .. o.leak
            end
          end
        end
        assert(#leaks == 0, #leaks .. " messages name a position:\n" .. table.concat(leaks, "\n"))
      end)

      it("explain's rows give the states they stage, in the core", function()
        local ok, why = ready()
        if not ok then return pending(why) end
        local n, staged = 0, 0
        for _, e in ipairs(run.extra or {}) do
          for _, row in ipairs(e[1] and e or { e }) do
            if row.fn == "explain" and row.expect then staged = staged + 1 end
          end
        end
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
        assert.equals(staged, n, "explain rows staged and run")
      end)

      for _, kind in ipairs { "uv", "uv_nocore", "ngx" } do
        it(T.NAMES[kind] .. " gives the core's first value and code", function()
          local ok, why = ready(kind)
          if not ok then return pending(why) end
          local other = res.outcomes[kind]
          assert.equals(#res.calls, #other)
          assert(not other.exit, T.NAMES[kind] .. " answered every call, then its process failed: " ..
            tostring(other.exit))
          local diff = C.diff(res.calls, "core (uv for callbacks)", base_of(res), kind, other, agree_for(kind))
          assert(diff == "", diff)
        end)

        if run.callbacks then
          -- SPEC "adapters": the callback runs exactly once, never before
          -- on_used/on_free has returned
          it(T.NAMES[kind] .. " calls back exactly once, after the call returned", function()
            local ok, why = ready(kind)
            if not ok then return pending(why) end
            local bad = {}
            for i, c in ipairs(res.calls) do
              local o = res.outcomes[kind][i]
              if c.callback and not o.raised and (o.calls ~= 1 or o.early or o.returned ~= "true") then
                bad[#bad + 1] = c.label .. ": " .. C.show(o)
              end
            end
            assert(#bad == 0, table.concat(bad, "\n"))
          end)
        end

        -- SPEC "Split of work": a message is "<operation> <where>: <text>",
        -- the same from every transport.
        it(T.NAMES[kind] .. " words each error as the core does", function()
          local ok, why = ready(kind)
          if not ok then return pending(why) end
          local diff = C.diff(res.calls, "core (uv for callbacks)", base_of(res), kind, res.outcomes[kind],
            function(_, a, b)
              if not (a and b and a.v == "nil" and b.v == "nil" and a.code == b.code) then return true end
              -- a wait's timeout ends with its explanation, whose holders
              -- (pids) and, without the core, probe-only sentence differ by
              -- transport: the words up to it must not (explain's own rows
              -- compare the states)
              local ta = a.code == "ETIMEDOUT" and a.err and a.err:match("^(timeout after %d+ ms waiting for .-): ")
              local tb = b.code == "ETIMEDOUT" and b.err and b.err:match("^(timeout after %d+ ms waiting for .-): ")
              if ta and tb then return ta == tb end
              return a.err == b.err
            end)
          assert(diff == "", diff)
        end)
      end
    end)
  end
end)
