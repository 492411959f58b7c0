--- The ports a process opens: the listening TCP (bound UDP) sockets of a
-- process and its descendants, and a wait until it has opened them that
-- ends at once when the process exits. The C core reads /proc and the
-- sockets themselves (csrc/procs.c); a socket whose name this process may
-- not read (another user's) is found by its inode in the kernel's socket
-- tables (listen.lua). Linux only: elsewhere nil, msg, "ENOTSUP".
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local words = require "tcp_port_used.words"
local policy = require "tcp_port_used.policy"
local loop = require "tcp_port_used.loop"

local M = {}

local ipairs, type, concat, sort, min = ipairs, type, table.concat, table.sort, math.min
local fail = args.fail

M.OPTIONS = {
  listeners = { pid = true, tree = true, proto = true },
  wait_for_listeners = { pid = true, tree = true, proto = true, count = true, ports = true,
                         timeout_ms = true, interval_ms = true, sleep = true, yield = true },
}

local PROTOS = { tcp = true, udp = true, any = true }

-- How the address of a socket is read: "socket" (lent by the kernel,
-- pidfd_getfd; by inode where it refuses) or "tables" (always by inode,
-- in the kernel's socket tables: what a process that may not borrow the
-- sockets gets; specs run both).
M.names = "socket"

-- Exit statuses that a host learnt of by itself (luv's exit callback reaps
-- the child before a wait can look), by pid: { code, signal }.
M.reported = {}

local function check_pid(fname, v)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v > 2147483647 then
    fail(fname, 1, "pid must be a positive integer", v)
  end
  return v
end

--- The normalized options of listeners (t a table or a pid) or of
-- wait_for_listeners (wait true).
function M.options(fname, t, wait)
  if type(t) ~= "table" then t = { pid = t } end
  args.known(fname, 1, t, M.OPTIONS[wait and "wait_for_listeners" or "listeners"])
  local o = { pid = check_pid(fname, t.pid), tree = args.boolean(fname, 1, t.tree, "tree", true) }
  local proto = t.proto
  if proto == nil then proto = "tcp" end
  if not PROTOS[proto] then fail(fname, 1, "proto must be one of tcp, udp, any", proto, 4) end
  o.proto = proto
  if not wait then return o end
  if t.ports ~= nil then
    if t.count ~= nil then
      error(string.format("bad argument #1 to '%s' (give count or ports, not both)", fname), 3)
    end
    o.ports = args.ports(fname, 1, t.ports)
  else
    local c = t.count
    if c == nil then c = 1 end
    if type(c) ~= "number" or c % 1 ~= 0 or c < 1 or c > 65535 then
      fail(fname, 1, "count must be an integer in 1..65535", c, 4)
    end
    o.count = c
  end
  o.timeout_ms = args.ms(fname, 1, t.timeout_ms, "timeout_ms", 10000)
  o.interval_ms = args.ms(fname, 1, t.interval_ms, "interval_ms", nil)
  o.sleep = args.func(fname, 1, t.sleep, "sleep")
  o.yield = args.boolean(fname, 1, t.yield, "yield", true)
  return o
end

local function where(pid)
  return "of process " .. pid
end

local function by_port(a, b)
  if a.port ~= b.port then return a.port < b.port end
  if a.proto ~= b.proto then return a.proto < b.proto end
  return a.address < b.address
end

-- Entries known only by inode: their names from the kernel's tables of
-- each protocol asked for, or nil, code.
local function by_inode(proto)
  local listen = require "tcp_port_used.listen"
  local names = {}
  for _, p in ipairs(proto == "any" and { "tcp", "udp" } or { proto }) do
    local ls, code = listen.listeners(1, 65535, p)
    if not ls then return nil, code end
    for _, l in ipairs(ls) do
      l.proto = p
      names[l.inode] = l
    end
  end
  return names
end

--- listeners(o): normalized options -> the list of { address, port,
-- family, proto, pid, command, inode, pids }, one per socket (named after
-- the holder nearest the root when several processes of the tree share
-- it), by port; or nil,
-- err, code (ESRCH: no such process, or it has exited).
function M.listeners(o)
  -- one process alone needs no look at /proc/PID/stat unless it holds
  -- no socket at all: then it may be gone, or a zombie
  local pids, code = { o.pid }
  if o.tree then
    pids, code = core.proc_tree(o.pid, true)
    if not pids then return nil, words.message("listeners", where(o.pid), code), code end
  end
  local socks, denied = core.proc_sockets(pids, o.proto, M.names == "tables")
  if not socks then return nil, words.message("listeners", where(o.pid), denied), denied end
  if not o.tree and #socks == 0 then
    pids, code = core.proc_tree(o.pid, false)
    if not pids then return nil, words.message("listeners", where(o.pid), code), code end
  end
  if denied[1] == o.pid then
    return nil, words.message("listeners", where(o.pid), "EACCES"), "EACCES"
  end
  -- a socket several processes of the tree share is named after the one
  -- nearest the root (a master before its workers: pids wrap, so not
  -- simply the lowest), proc_tree listing parents before their children
  local rank = {}
  for i, p in ipairs(pids) do rank[p] = i end
  local names, out, seen = nil, {}, {}
  for _, s in ipairs(socks) do
    if not s.address then
      if not names then
        local ncode
        names, ncode = by_inode(o.proto)
        if not names then return nil, words.message("listeners", where(o.pid), ncode), ncode end
      end
      local l = names[s.inode]
      if l then s.proto, s.family, s.address, s.port = l.proto, l.family, l.address, l.port end
    end
    if s.address then
      local e = seen[s.inode]
      if not e then
        s.pids = { s.pid }
        seen[s.inode] = s
        out[#out + 1] = s
      else
        e.pids[#e.pids + 1] = s.pid
        if rank[s.pid] < rank[e.pid] then e.pid, e.command = s.pid, s.command end
      end
    end
  end
  for _, e in ipairs(out) do sort(e.pids) end
  sort(out, by_port)
  return out
end

--- describe(list): "127.0.0.1:8080, [::1]:27015/udp" for a list of
-- listeners, nil for an empty one (words and run's STATUS line).
local function show(list)
  if #list == 0 then return nil end
  local t = {}
  for i, l in ipairs(list) do
    local a = l.address:find(":", 1, true) and "[" .. l.address .. "]" or l.address
    t[i] = a .. ":" .. l.port .. (l.proto == "udp" and "/udp" or "")
  end
  return concat(t, ", ")
end

local function wanted(o)
  if o.ports then return "port" .. (#o.ports > 1 and "s " or " ") .. concat(o.ports, ", ") end
  return o.count .. (o.count > 1 and " listeners" or " listener")
end

local function satisfied(o, list)
  if not o.ports then return #list >= o.count end
  local have = {}
  for _, l in ipairs(list) do have[l.port] = true end
  for _, p in ipairs(o.ports) do
    if not have[p] then return false end
  end
  return true
end

--- The answer for a process that has exited: nil, msg, "ESRCH", { pid,
-- code, signal } (code and signal nil where this process cannot know).
local function exited(pid)
  local state, code, signal = core.proc_state(pid)
  local r = M.reported[pid]
  if r then
    M.reported[pid] = nil
    code, signal = r[1], r[2]
    if signal == 0 then signal = nil else code = code ~= 0 and code or nil end
  elseif state ~= "exited" then
    code, signal = nil, nil
  end
  code, signal = code or nil, signal or nil
  return nil, words.exited_before(pid, code, signal), "ESRCH",
    { pid = pid, code = code, signal = signal }
end

--- wait(o, sleep, now): the loop of wait_for_listeners for normalized
-- options o: the list once the tree holds what o asks for; nil, msg,
-- "ESRCH", exit at once when the process has exited; nil, msg,
-- "ETIMEDOUT" after o.timeout_ms; nil, err, code for an error that
-- looking again cannot mend.
function M.wait(o, sleep, now)
  local start = now()
  local deadline = start + o.timeout_ms
  local last = {}
  while true do
    local list, err, code = M.listeners(o)
    if list then
      if satisfied(o, list) then return list end
      last = list
    elseif code == "ESRCH" then
      return exited(o.pid)
    elseif policy.permanent("listeners", code) then
      return nil, err, code
    end
    local t = now()
    local left = deadline - t
    if left <= 0 then
      return nil, words.listeners_timeout(o.pid, o.timeout_ms, show(last), wanted(o)), "ETIMEDOUT"
    end
    sleep(min(loop.interval(o.interval_ms, t - start), left))
  end
end

M.describe, M.wanted = show, wanted

return M
