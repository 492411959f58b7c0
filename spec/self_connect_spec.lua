-- SPEC "check": a connect that reaches its own socket is not a server. In
-- a network namespace whose ephemeral range is narrowed to P and P+1, the
-- kernel picks P first as the source port of a connect to P, and with
-- nothing listening there TCP's simultaneous open connects the probe to
-- itself. Every transport probes P there many times and must never say
-- true; then a server binds P at once (no TIME_WAIT from the port to
-- itself holds it); and a plain connect loop shows that the fault is live
-- in that very namespace, so that the spec cannot pass vacuously.
local H = require "helpers"
local C = require "calls"
local S = require "selfconnect"
local T = require "transports"

local TRIES = 25

describe("a probe that connects to itself", function()
  if not H.netns_or_pending(it) then return end

  local kinds = { "core", "check_many", "uv", "uv_nocore", "ngx" }
  local names = setmetatable({ check_many = "the core module's check_many" }, { __index = T.NAMES })
  for _, kind in ipairs(kinds) do
    it("is never in use, through " .. names[kind], function()
      local out = H.lua_in_netns(string.format("require('selfconnect').run(%q, %d)", kind, TRIES))
      local res = S.parse(out)
      assert(res, "the stage failed:\n" .. out)
      if res.missing then return pending(res.missing) end
      assert(not res.failure, res.failure)
      local p = res.port
      assert.equals(p .. " " .. (p + 1), res.range, "the ephemeral range of the namespace")
      assert.equals(#res.calls, #res.outcomes)
      -- the wrong answers, counted by call and answer
      local wrong, order, n = {}, {}, 0
      for i, c in ipairs(res.calls) do
        local o = res.outcomes[i]
        local right
        if c.fn == "wait_until_used" then
          right = o.v == "nil" and o.code == "ETIMEDOUT"
        else
          right = o.v == "false"
        end
        if not right then
          local line = "  " .. c.label .. ": " .. C.show(o)
          if not wrong[line] then order[#order + 1] = line end
          wrong[line], n = (wrong[line] or 0) + 1, n + 1
        end
      end
      for i, line in ipairs(order) do order[i] = line .. " (x" .. wrong[line] .. ")" end
      assert(n == 0, n .. " of " .. #res.calls .. " probes of free port " .. p ..
        " did not answer free:\n" .. table.concat(order, "\n"))
      assert.equals(0, res.time_wait, "TIME_WAIT entries from port " .. p)
      assert.equals("ok", res["listen 127.0.0.1"], "a server binding 127.0.0.1:" .. p)
      assert.equals("ok", res["listen ::1"], "a server binding [::1]:" .. p)
      assert.is_true(res.self >= 1, "a plain connect loop never reached itself in " ..
        res.tries .. " tries: the namespace does not show the fault")
    end)
  end
end)
