--- LuaSocket-style streams for the readiness exchanges (ready/), over any
-- transport. A transport gives its stream class three raw methods, each
-- bounded by the attempt's deadline (self.deadline):
--   self:_read()       -> data (not empty) | "" (the peer closed) | nil, code
--   self:_write(data)  -> true (all of it sent) | nil, code
--   self:_close(how)   -- how: nil (an ordinary close, FIN) or "reset"
-- and this module adds what the exchanges call:
--   s:send(data)       -> bytes sent | nil, err, code
--   s:receive(pattern) -> data | nil, err, code; pattern "*l" (a line, CR
--                         removed) or a byte count
--   s:close()
-- with err worded as LuaSocket and cosockets word it ("closed",
-- "timeout") and code as the rest of the module ("ECONNRESET",
-- "ETIMEDOUT"). A peer that closes before the reply is complete is
-- "closed", "ECONNRESET". Reads are bounded: a line longer than MAX_LINE
-- bytes is EPROTO, a byte count above MAX_COUNT an argument error. The
-- stream remembers the operation, code and detail of its last failure
-- (s.op, s.code, s.detail), so that a probe can tell a transport's error from an
-- exchange's own verdict.
local words = require "tcp_port_used.words"

local M = { MAX_LINE = 8192, MAX_COUNT = 1048576 }

local type, tostring, find, sub, gsub, error = type, tostring, string.find, string.sub,
  string.gsub, error

local CLOSED = { ECONNRESET = true, EPIPE = true, ECONNABORTED = true, ENOTCONN = true,
                 ECLOSED = true }

--- How a stream words code from operation op ("send", "receive").
function M.err_of(op, code)
  if code == "ETIMEDOUT" then return "timeout" end
  if CLOSED[code] then return "closed" end
  return words.text(op, code)
end
local err_of = M.err_of

local function failed(self, op, code, err)
  -- err, when given, says more than the code's words (s.detail)
  self.op, self.code, self.detail = op, code, err
  return nil, err or err_of(op, code), code
end

local methods = {}

function methods:send(data)
  local t = type(data)
  if t ~= "string" then
    if t ~= "number" then
      error("bad argument #1 to 'send' (string expected, got " .. t .. ")", 2)
    end
    data = tostring(data)
  end
  local ok, code = self:_write(data)
  if not ok then return failed(self, "send", code) end
  return #data
end

-- Appends what arrives next to the buffer: true, or nil, err, code.
local function more(self)
  local data, code = self:_read()
  if not data then return failed(self, "receive", code) end
  if data == "" then return failed(self, "receive", "ECONNRESET") end
  self.buf = self.buf .. data
  return true
end

local function line(self)
  while true do
    local buf = self.buf
    local i = find(buf, "\n", self.scan, true)
    if i then
      self.buf, self.scan = sub(buf, i + 1), 1
      local l = sub(buf, 1, i - 1)
      if find(l, "\r", 1, true) then l = gsub(l, "\r", "") end
      return l
    end
    if #buf > M.MAX_LINE then
      return failed(self, "receive", "EPROTO", "a line longer than " .. M.MAX_LINE .. " bytes")
    end
    self.scan = #buf + 1
    local ok, err, code = more(self)
    if not ok then return nil, err, code end
  end
end

function methods:receive(pattern)
  if pattern == nil or pattern == "*l" or pattern == "l" then return line(self) end
  if type(pattern) ~= "number" or pattern % 1 ~= 0 or pattern < 0 or pattern > M.MAX_COUNT then
    error("bad argument #1 to 'receive' (pattern must be \"*l\" or a byte count in 0.." ..
      M.MAX_COUNT .. ", got " .. tostring(pattern) .. ")", 2)
  end
  while #self.buf < pattern do
    local ok, err, code = more(self)
    if not ok then return nil, err, code end
  end
  local buf = self.buf
  self.buf, self.scan = sub(buf, pattern + 1), 1
  return sub(buf, 1, pattern)
end

function methods:close(how)
  if not self.closed then
    self.closed = true
    self:_close(how)
  end
  return 1
end

--- The metatable of a transport's streams, from its raw methods.
function M.class(raw)
  local index = { _read = raw._read, _write = raw._write, _close = raw._close }
  for k, f in pairs(methods) do index[k] = f end
  return { __index = index }
end

--- A new stream of class mt; fields holds the transport's own (its
-- handle, deadline, ...).
function M.new(mt, fields)
  fields.buf, fields.scan = "", 1
  return setmetatable(fields, mt)
end

return M
