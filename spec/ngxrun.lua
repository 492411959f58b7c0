--- A real nginx (Debian's nginx-light with libnginx-mod-http-lua) for the
-- specs: started on a loopback port picked at run time, with a prefix of
-- its own and a configuration template from spec/nginx/, driven over
-- HTTP. Plain Lua (no busted), so that a child in a network namespace can
-- start one too. nginx runs LuaJIT whatever runtime runs the spec.
local H = require "helpers"
local R = require "readable"
local socket = require "socket"

local NG = {}

local NGINX = "/usr/sbin/nginx"
local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}
NG.NGINX, NG.MODULES = NGINX, MODULES

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local slurp = H.slurp

--- The first thing missing to run nginx with the module here, or nil.
function NG.missing()
  for _, p in ipairs { NGINX, MODULES[1], MODULES[2], H.root .. "/build/jit/tcp_port_used/core.so" } do
    if not exists(p) then return p end
  end
end

--- Polls f until it returns a truthy value; raises after `s` seconds.
function NG.await(what, f, s)
  local deadline = socket.gettime() + (s or 10)
  while true do
    local v = f()
    if v then return v end
    if socket.gettime() > deadline then error("timed out waiting for " .. what, 2) end
    socket.sleep(0.01)
  end
end
local await = NG.await

-- A process counts as gone once it is a zombie: nginx is not our child,
-- and whoever reaps it may be slow.
function NG.alive(pid)
  local stat = slurp("/proc/" .. pid .. "/stat")
  return stat ~= "" and not stat:match("^%d+ %b() Z")
end
local alive = NG.alive

local Nginx = {}
Nginx.__index = Nginx

--- Sends a request (GET, or POST with body) and returns the connection.
-- The connection comes from self.source_port where that is set (a spec
-- that narrows the ephemeral range keeps its requests out of it).
function Nginx:send(path, timeout_s, body)
  local c = (socket.tcp4 or socket.tcp)()
  c:settimeout(timeout_s or 10)
  if self.source_port then
    assert(c:setoption("reuseaddr", true))
    assert(c:bind("127.0.0.1", self.source_port))
  end
  assert(c:connect("127.0.0.1", self.port))
  local req = body
    and ("POST " .. path .. " HTTP/1.0\r\nHost: spec\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    or ("GET " .. path .. " HTTP/1.0\r\nHost: spec\r\n\r\n")
  assert(c:send(req))
  return c
end

--- The status, body and headers (lower-case names) of the response on c.
function Nginx.receive(_, c)
  local data, err, partial = c:receive("*a")
  c:close()
  if not data then error("no response from nginx (" .. err .. "): " .. tostring(partial), 2) end
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return tonumber(head:match("^HTTP/%d%.%d (%d+)")), body, headers
end

function Nginx:get(path, timeout_s)
  return self:receive(self:send(path, timeout_s))
end

--- The body of a 200 response to GET path (or POST body), without its
-- final newline; raises on any other status.
function Nginx:body(path, body, timeout_s)
  local status, b = self:receive(self:send(path, timeout_s, body))
  if status ~= 200 then
    error("nginx answered " .. tostring(status) .. " to " .. path .. ": " .. tostring(b) ..
      "\n" .. self:error_log(), 2)
  end
  return (b:gsub("\n$", ""))
end

function Nginx:error_log()
  return slurp(self.prefix .. "/logs/error.log")
end

--- Stops nginx (the master first: a worker stopped on its own is
-- replaced) and removes its prefix.
function Nginx:stop()
  self.pid = self.pid or tonumber(slurp(self.prefix .. "/logs/nginx.pid"))
  for _, pid in ipairs { self.pid or false, self.worker or false } do
    if pid and alive(pid) then
      os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
      if not pcall(await, "nginx to stop", function() return not alive(pid) end, 10) then
        os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      end
    end
  end
  os.execute("rm -rf " .. H.quote(self.prefix))
end

--- Starts nginx with the template conf (a path under spec/nginx/), whose
-- dollar-brace names are filled from vars; LOAD_MODULES, ROOT and PORT
-- (a free loopback port) are provided. Returns the running nginx (port,
-- pid, worker, prefix) or raises with its logs.
function NG.start(conf, vars)
  local self = setmetatable({}, Nginx)
  local f = assert(io.popen("mktemp -d /tmp/tpu-ngx.XXXXXX"))
  self.prefix = f:read("*l")
  f:close()
  os.execute("mkdir -p " .. self.prefix .. "/logs " .. self.prefix .. "/tmp")
  self.port = H.free_port()
  local all = {
    LOAD_MODULES = "load_module " .. MODULES[1] .. ";\nload_module " .. MODULES[2] .. ";",
    -- the workers run as another user, which may not read this checkout
    ROOT = R.tree(self.prefix), PORT = self.port,
  }
  for k, v in pairs(vars or {}) do all[k] = v end
  local text = slurp(H.root .. "/spec/nginx/" .. conf):gsub("%${([%w_]+)}", function(k)
    return tostring(assert(all[k], k))
  end)
  local out = assert(io.open(self.prefix .. "/nginx.conf", "w"))
  out:write(text)
  out:close()
  H.spawn(string.format("%s -p %s/ -c %s/nginx.conf -e %s/logs/error.log -g 'daemon off;' 2>%s/stderr.log",
    NGINX, self.prefix, self.prefix, self.prefix, self.prefix))
  local ok = pcall(await, "nginx to answer", function()
    local c = socket.tcp()
    c:settimeout(1)
    local up = c:connect("127.0.0.1", self.port)
    c:close()
    return up
  end, 20)
  if ok then
    -- nginx listens before it writes its pid file.
    local got, pid = pcall(await, "nginx's pid file", function()
      return tonumber(slurp(self.prefix .. "/logs/nginx.pid"))
    end)
    ok, self.pid = got, got and pid or nil
  end
  if not ok then
    local why = slurp(self.prefix .. "/stderr.log") .. self:error_log()
    self:stop()
    error("nginx did not start:\n" .. why)
  end
  self.worker = tonumber(self:body("/pid"))
  return self
end

return NG
