--- A server that misbehaves on purpose, for spec/ready_faults_spec.lua,
-- run in a child process: lua fault_server.lua PORTFILE. It listens on
-- 127.0.0.1, port 0, once per mode below, writes "mode port" lines to
-- PORTFILE once all listen, and serves one connection at a time (the spec
-- probes one at a time) until it is killed. How each client of the mode
-- "tail" closed, "fin" or "reset", is appended to PORTFILE.closes, a line
-- each.
local socket = require "socket"

local MODES = {
  -- replies cut short, then a close
  cut_http = { reply = "HTTP/1.1 20" },
  cut_redis = { reply = "+PO" },
  cut_postgres = { reply = "R\0\0" },
  -- a whole reply, a byte every 5 ms
  bytes_http = { reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", per_byte = 0.005 },
  bytes_redis = { reply = "+PONG\r\n", per_byte = 0.005 },
  bytes_postgres = { reply = "R\0\0\0\8\0\0\0\5", per_byte = 0.005 },
  -- far too long: a line that never ends, a message that claims 2 GB
  long_line = { endless = true },
  long_postgres = { reply = "E\127\255\255\255" .. ("x"):rep(1000) },
  -- "not ready", after the 50 ms every reply here takes (read_request)
  http_503 = { reply = "HTTP/1.1 503 Service Unavailable\r\n\r\n" },
  -- never a reply; a reset; a server that speaks first, another protocol
  never = { never = true },
  reset = { reset = true },
  banner = { reply = "SSH-2.0-OpenSSH_9.2\r\n", first = true },
  -- a reply with more after it than the exchange reads (more than one
  -- 8 KiB read of the stream takes, less than a socket's first send
  -- buffer, so it all arrives at once), then waits for the client to close
  tail = { reply = "+PONG\r\n" .. ("x"):rep(12000), hold = true },
}

local listeners, mode_of, lines = {}, {}, {}
for name, m in pairs(MODES) do
  local l = assert(socket.bind("127.0.0.1", 0))
  listeners[#listeners + 1] = l
  mode_of[l] = m
  local _, port = l:getsockname()
  lines[#lines + 1] = name .. " " .. port
end
local f = assert(io.open(arg[1] .. ".tmp", "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
assert(os.rename(arg[1] .. ".tmp", arg[1]))

-- What the client sends first (a request, a PING, a StartupMessage).
local function read_request(c)
  c:settimeout(0.05)
  local _, _, partial = c:receive(65536)
  return partial
end

-- Until the client goes (or 30 s pass).
local function hold(c)
  c:settimeout(0.1)
  for _ = 1, 300 do
    local _, err = c:receive(1)
    if err ~= "timeout" then return end
  end
end

local function serve(c, m)
  if not m.first then read_request(c) end
  if m.reset then
    c:setoption("linger", { on = true, timeout = 0 })
  elseif m.never then
    hold(c)
  elseif m.endless then
    c:settimeout(5)
    local chunk = ("x"):rep(65536)
    while c:send(chunk) do end
  elseif m.per_byte then
    c:settimeout(5)
    for i = 1, #m.reply do
      if not c:send(m.reply:sub(i, i)) then break end
      socket.sleep(m.per_byte)
    end
    hold(c)
  else
    c:settimeout(5)
    c:send(m.reply)
    if m.hold then
      hold(c)
      -- LuaSocket says "closed" for a FIN and for a reset alike; after a
      -- FIN one more byte can still be sent, after a reset it cannot
      local how = c:send("x") and "fin" or "reset"
      local log = assert(io.open(arg[1] .. ".closes", "a"))
      log:write(how, "\n")
      log:close()
    end
  end
  c:close()
end

while true do
  local ready = socket.select(listeners, nil)
  for _, l in ipairs(ready) do
    l:settimeout(0)
    local c = l:accept()
    if c then serve(c, mode_of[l]) end
  end
end
