--- The "postgres" readiness exchange: a protocol 3.0 StartupMessage
-- (user and database, default "postgres"; application_name
-- tcp-port-used). What comes back:
-- * an authentication request: ready; the probe leaves at the password
--   prompt, which PostgreSQL does not log;
-- * AuthenticationOk (trust): ready; the probe reads on to ReadyForQuery
--   and sends Terminate, so that nothing is logged either;
-- * ErrorResponse with SQLSTATE 57P03 (starting up, shutting down, in
--   recovery without hot standby): not ready, with the server's message;
-- * any other ErrorResponse: ready (the server is up; it logs that error,
--   so name an existing role in `user`);
-- * anything else: EPROTO.
-- Every read is bounded: a message longer than MAX_MESSAGE, or more than
-- MAX_MESSAGES of them, is EPROTO. A pure function of the stream.
local quote = require("tcp_port_used.words").quote

local M = {}

local byte, char, find, sub, floor = string.byte, string.char, string.find, string.sub, math.floor

M.MAX_MESSAGE, M.MAX_MESSAGES = 32768, 64

local function int32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

local function get32(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local TERMINATE = "X" .. int32(4)

--- The StartupMessage for user and database.
function M.startup(user, database)
  local body = int32(196608) .. "user\0" .. user .. "\0database\0" .. database ..
    "\0application_name\0tcp-port-used\0\0"
  return int32(#body + 4) .. body
end

-- One message: type, body; or nil, err, code.
local function message(s)
  local head, err, code = s:receive(5)
  if not head then return nil, err, code end
  local t, len = sub(head, 1, 1), get32(head, 2)
  if not find("REZSKNv", t, 1, true) then
    return nil, "not a PostgreSQL reply: " .. quote(head), "EPROTO"
  end
  if len < 4 or len > M.MAX_MESSAGE then
    return nil, "a PostgreSQL message of " .. len .. " bytes", "EPROTO"
  end
  if len == 4 then return t, "" end
  local body
  body, err, code = s:receive(len - 4)
  if not body then return nil, err, code end
  return t, body
end

--- The fields of an ErrorResponse body, by their type byte ("C": the
-- SQLSTATE, "M": the message); nil when it is malformed.
function M.fields(body)
  local fields, i = {}, 1
  while true do
    local c = sub(body, i, i)
    if c == "" then return nil end
    if c == "\0" then return fields end
    local j = find(body, "\0", i + 1, true)
    if not j then return nil end
    fields[c] = sub(body, i + 1, j - 1)
    i = j + 1
  end
end

local function error_response(body)
  local f = M.fields(body)
  if not f or not f.C then return nil, "a malformed PostgreSQL ErrorResponse", "EPROTO" end
  if f.C == "57P03" then
    local m = f.M
    return false, (m and m ~= "") and m or "starting up"
  end
  return true
end

--- The exchange for normalized options o (user, database):
-- function(s) -> true | false, reason | nil, err, code.
function M.new(o)
  local startup = M.startup(o.user or "postgres", o.database or "postgres")
  return function(s)
    local ok, err, code = s:send(startup)
    if not ok then return nil, err, code end
    local authenticated = false
    for _ = 1, M.MAX_MESSAGES do
      local t, body
      t, body, code = message(s)
      if not t then return nil, body, code end
      if t == "E" then return error_response(body) end
      if t == "R" then
        if #body < 4 then return nil, "a malformed PostgreSQL authentication request", "EPROTO" end
        if get32(body, 1) ~= 0 then return true end -- asked for a password: leave
        authenticated = true
      elseif t == "Z" then
        if not authenticated then return nil, "ReadyForQuery before authentication", "EPROTO" end
        s:send(TERMINATE)
        return true
      end
      -- ParameterStatus, BackendKeyData, NoticeResponse,
      -- NegotiateProtocolVersion: read on
    end
    return nil, "more than " .. M.MAX_MESSAGES .. " PostgreSQL messages at startup", "EPROTO"
  end
end

return M
