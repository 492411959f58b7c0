--- The "http" readiness exchange: GET <path> HTTP/1.1 with Host,
-- User-Agent: tcp-port-used/<version> and Connection: close; reads the
-- status line (and the headers of interim 1xx replies) only. Ready when
-- the status is one of o.status (default 200..399, as Kubernetes'
-- httpGet); another status is false, "status 503"; a reply that is not
-- HTTP is EPROTO. A pure function of the stream (see ready.lua).
local version = require "tcp_port_used.version"
local quote = require("tcp_port_used.words").quote

local M = {}

local find, match, tonumber = string.find, string.match, tonumber

-- Interim replies (103 Early Hints) read before the final status, and the
-- header lines of each, at most.
local MAX_INTERIM, MAX_HEADERS = 4, 100

--- Whether status (a number) is accepted by the normalized status option
-- (args.lua): nil (200..399), { from =, to = } (a class) or a set.
function M.accepts(status, code)
  if status == nil then return code >= 200 and code <= 399 end
  if status.from then return code >= status.from and code <= status.to end
  return status[code] == true
end

--- The Host header for host (as given; nil: the loopback) and port.
function M.host_header(host, port, unix)
  if unix then return "localhost" end
  local bare = host and (match(host, "^%[(.*)%]$") or host) or "localhost"
  if find(bare, ":", 1, true) then bare = "[" .. bare .. "]" end
  if port == 80 then return bare end
  return bare .. ":" .. port
end

-- The status line, skipping interim replies: status, or nil, err, code.
local function final_status(s)
  for _ = 1, MAX_INTERIM + 1 do
    local line, err, code = s:receive("*l")
    if not line then return nil, err, code end
    local st = match(line, "^HTTP/%d%.%d (%d%d%d)[ \r]") or match(line, "^HTTP/%d%.%d (%d%d%d)$")
    if not st then return nil, "not an HTTP reply: " .. quote(line), "EPROTO" end
    st = tonumber(st)
    if st >= 200 or st == 101 then return st end
    for _ = 1, MAX_HEADERS + 1 do
      line, err, code = s:receive("*l")
      if not line then return nil, err, code end
      if line == "" then break end
    end
    if line ~= "" then return nil, "an interim reply with too many headers", "EPROTO" end
  end
  return nil, "too many interim replies", "EPROTO"
end

--- The exchange for normalized options o (path, status, host, unix):
-- function(s, port) -> true | false, "status N" | nil, err, code.
function M.new(o)
  local path, status, host, unix = o.path or "/", o.status, o.host, o.unix
  local requests = {}
  return function(s, port)
    local req = requests[port or 0]
    if not req then
      req = "GET " .. path .. " HTTP/1.1\r\nHost: " .. M.host_header(host, port, unix) ..
        "\r\nUser-Agent: tcp-port-used/" .. version .. "\r\nConnection: close\r\n\r\n"
      requests[port or 0] = req
    end
    local ok, err, code = s:send(req)
    if not ok then return nil, err, code end
    local st
    st, err, code = final_status(s)
    if not st then return nil, err, code end
    if M.accepts(status, st) then return true end
    return false, "status " .. st
  end
end

return M
