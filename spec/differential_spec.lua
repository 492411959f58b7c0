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

local MODES = { "connect", "bind", "any", "listen" }

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
}

local RUNS = {
  {
    name = "with both loopbacks",
    setup = "",
    ports = { "open4", "open6", "wild4", "wild6", "dual6", "refused4", "refused6", "unbound" },
    hosts = { false, "127.0.0.1", "[127.0.0.1]", "::1", "[::1]", "localhost",
              "999.1.1.1", "1::2::3", "[::1", "1.2.3.4.5" },
  },
  {
    name = "without IPv6",
    setup = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; " ..
      "echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6; ",
    ports = { "open4", "wild4", "refused4", "unbound" },
    hosts = { false, "127.0.0.1", "::1", "[::1]", "localhost", "1::2::3" },
  },
}

-- Without the C core, tcp_port_used.uv cannot ask the kernel who listens:
-- listen mode is an argument error there, naming the missing core.
local function agree_for(kind)
  return function(call, core, other)
    local a = call.args[1]
    if kind == "uv_nocore" and a.mode == "listen" and core and not core.raised then
      return other ~= nil and other.raised ~= nil and
        other.raised:find("needs the C core", 1, true) ~= nil
    end
    return C.alike(core, other)
  end
end

local function find(res, label)
  for i, c in ipairs(res.calls) do
    if c.label == label then return res.outcomes.core[i] end
  end
  error("no call " .. label)
end

describe("every transport answers alike", function()
  if not H.netns_or_pending(it) then return end

  for _, run in ipairs(RUNS) do
    describe(run.name, function()
      local res, failure
      setup(function()
        local t = { ports = run.ports, hosts = run.hosts, modes = MODES, extra = RAISING }
        local out = H.lua_in_netns("require('transports').print_table_run(" .. C.literal(t) .. ")",
          run.setup)
        res = T.parse(out)
        if not res then failure = "the table run failed:\n" .. out end
      end)

      it("the table exercises every kind of answer in the core", function()
        assert(res, failure)
        local seen = {}
        for _, o in ipairs(res.outcomes.core) do
          seen[o.raised and "raised" or o.v] = true
        end
        assert.same({ ["true"] = true, ["false"] = true, ["nil"] = true, raised = true }, seen)
        local p = res.ports
        assert.same({ v = "true" },
          find(res, string.format("check open4(%d) host=\"127.0.0.1\" mode=connect", p.open4)))
        assert.same({ v = "false" },
          find(res, string.format("check refused4(%d) host=\"127.0.0.1\" mode=connect", p.refused4)))
        assert.equals("EAI_NONAME",
          find(res, string.format("check open4(%d) host=\"1::2::3\" mode=connect", p.open4)).code)
        if run.name == "without IPv6" then
          local o = find(res, string.format("check open4(%d) host=\"::1\" mode=connect", p.open4))
          if o.v == "true" or o.code ~= "EAFNOSUPPORT" then
            return pending("IPv6 could not be disabled in the namespace: " .. C.show(o))
          end
        end
      end)

      for _, kind in ipairs { "uv", "uv_nocore", "ngx" } do
        it(T.NAMES[kind] .. " gives the core's first value and code", function()
          assert(res, failure)
          if res.missing[kind] then return pending(res.missing[kind]) end
          local other = res.outcomes[kind]
          assert.equals(#res.calls, #other)
          local diff = C.diff(res.calls, "core", res.outcomes.core, kind, other, agree_for(kind))
          assert(diff == "", diff)
        end)

        -- SPEC "Split of work": a message is "<operation> <where>: <text>",
        -- the same from every transport.
        it(T.NAMES[kind] .. " words each error as the core does", function()
          assert(res, failure)
          if res.missing[kind] then return pending(res.missing[kind]) end
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
