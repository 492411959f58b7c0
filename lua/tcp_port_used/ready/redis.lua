--- The "redis" readiness exchange: the inline command PING. +PONG is
-- ready, and so are the refusals of a server that is up but wants
-- credentials or denies this client (-NOAUTH, -NOPERM, -WRONGPASS,
-- -DENIED: credentials are the caller's business); -LOADING, -BUSY and
-- -MASTERDOWN are not ready; anything else is EPROTO. Redis logs nothing
-- for it at its default level. A pure function of the stream.
local quote = require("tcp_port_used.words").quote

local M = {}

local match = string.match

local UP = { NOAUTH = true, NOPERM = true, WRONGPASS = true, DENIED = true }
local NOT_READY = { LOADING = "loading", BUSY = "busy", MASTERDOWN = "master down" }

--- The reply line's verdict: true | false, reason | nil, err, "EPROTO".
function M.judge(line)
  if line == "+PONG" then return true end
  local word = match(line, "^%-(%u+)")
  if word then
    if UP[word] then return true end
    if NOT_READY[word] then return false, NOT_READY[word] end
  end
  return nil, "not a Redis reply to PING: " .. quote(line), "EPROTO"
end

--- The exchange: function(s) -> true | false, reason | nil, err, code.
function M.new()
  return function(s)
    local ok, err, code = s:send("PING\r\n")
    if not ok then return nil, err, code end
    local line
    line, err, code = s:receive("*l")
    if not line then return nil, err, code end
    return M.judge(line)
  end
end

return M
