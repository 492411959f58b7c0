--- Readiness: `ready = "http" | "redis" | "postgres" | function(s)`. Each
-- built-in exchange is a pure function of a stream s with LuaSocket's
-- s:send(data) and s:receive("*l" | n) (ready/http.lua, redis.lua,
-- postgres.lua), so one implementation runs over every transport. This
-- module maps the option to the exchange and holds the rules for what an
-- exchange returns.
local M = {}

local type, tostring = type, tostring

local BUILT_IN = {
  http = require "tcp_port_used.ready.http",
  redis = require "tcp_port_used.ready.redis",
  postgres = require "tcp_port_used.ready.postgres",
}

--- The exchange for normalized options o (args.lua): function(s, port).
function M.exchange(o)
  local r = o.ready
  if type(r) == "function" then return r end
  return BUILT_IN[r].new(o)
end

--- What an exchange returned, made one of the documented shapes:
-- true (ready); false, reason or nil (it answered "not ready"); nil,
-- err, code (the probe failed; a missing code is EPROTO). A first value
-- that is neither a boolean nor nil is an error of the caller's function.
function M.result(r, err, code)
  if r == true then return true end
  if r == false then
    if err ~= nil then return false, tostring(err) end
    return false
  end
  if r == nil then
    if type(code) ~= "string" then code = "EPROTO" end
    return nil, err ~= nil and tostring(err) or "the ready function returned nothing", code
  end
  error("the ready function must return true, false [, reason] or nil, err, code; it returned "
    .. type(r) .. " " .. tostring(r), 0)
end

return M
