--- The words: one table from code to text, and the one shape of every
-- message, "<operation> <where>: <text>", the same from every transport.
-- Codes are the contract; nothing reads a message to decide anything.
local hosts = require "tcp_port_used.hosts"

local M = {}

local find = string.find

local TEXT = {
  ECONNREFUSED = "connection refused",
  ETIMEDOUT = "timed out",
  EHOSTUNREACH = "host unreachable",
  ENETUNREACH = "network unreachable",
  EHOSTDOWN = "host is down",
  ENETDOWN = "network is down",
  EACCES = "permission denied",
  EPERM = "operation not permitted",
  EADDRINUSE = "address in use",
  EADDRNOTAVAIL = "address not available",
  EAFNOSUPPORT = "address family not supported",
  EMFILE = "too many open files",
  ENFILE = "too many open files in system",
  ENOBUFS = "no buffer space available",
  ENOMEM = "out of memory",
  EINVAL = "invalid argument",
  ECONNRESET = "connection reset",
  ECONNABORTED = "connection aborted",
  EPIPE = "broken pipe",
  EPROTO = "protocol error",
  EAGAIN = "resource temporarily unavailable",
  ENOENT = "no such file or directory",
  ENOTDIR = "not a directory",
  ENOTSOCK = "not a socket",
  ENAMETOOLONG = "file name too long",
  EPROTONOSUPPORT = "protocol not supported",
  EOPNOTSUPP = "operation not supported",
  ENOTSUP = "not supported on this system",
  EBADMSG = "malformed reply from the kernel",
  EMSGSIZE = "reply from the kernel larger than expected",
  ECLOSED = "probe closed",
  ESRCH = "no such process",
  EAI_NONAME = "name or service not known",
  EAI_AGAIN = "temporary failure in name resolution",
  EAI_FAIL = "non-recoverable failure in name resolution",
  EAI_FAMILY = "address family not supported",
  EAI_MEMORY = "out of memory",
  EAI_SERVICE = "service not supported",
  EAI_NODATA = "no address associated with the name",
  EAI_ADDRFAMILY = "no address of that family for the name",
  ENOEXEC = "not an executable format",
  E2BIG = "argument list too long",
  ETXTBSY = "text file busy",
  ELOOP = "too many levels of symbolic links",
  -- a call that ended before its answer: Ctrl-C in Neovim's vim.wait, an
  -- nginx worker that exits while a wait is pending
  EINTR = "interrupted",
  ECANCELED = "canceled: the nginx worker is exiting",
}
M.TEXT = TEXT

-- Where an operation gives a code a meaning of its own.
local OP_TEXT = {
  -- a readiness exchange: an orderly close and a reset both end it early
  receive = { ECONNRESET = "connection closed by the server" },
  send = { ECONNRESET = "connection closed by the server", EPIPE = "connection closed by the server" },
  listen = {
    EADDRNOTAVAIL = "not an address of this machine (listen mode answers only for this machine)",
    ENOTSUP = "listen mode needs Linux (NETLINK_SOCK_DIAG or /proc/net/tcp)",
  },
  listeners = {
    ESRCH = "no such process (or it has exited)",
    ENOTSUP = "the sockets of a process can be listed on Linux only (/proc)",
  },
}

--- The words for code in operation op.
function M.text(op, code)
  local o = OP_TEXT[op]
  return o and o[code] or TEXT[code] or ("error " .. tostring(code))
end

--- Where a probe went: "127.0.0.1:80", "[::1]:80", or for a name
-- "db:5432 (10.0.0.2:5432)". address nil: the host alone (resolution).
function M.where(host, port, address)
  if not address then return host end
  local a = address:find(":", 1, true) and "[" .. address .. "]:" .. port or address .. ":" .. port
  if hosts.is_name(host) then
    local bare = hosts.bare(host)
    -- an error that came before any address (listen mode's backend) names the host once
    if address == bare then return bare .. ":" .. port end
    return bare .. ":" .. port .. " (" .. a .. ")"
  end
  return a
end

--- "<op> <where>: <text>" ("<op>: <text>" where is nil). A host refused because it reads as a legacy
-- IPv4 form (hosts.not_canonical) says why: "resolve 127.0.0.010: not a
-- canonical IPv4 address (leading zero)".
function M.message(op, where, code)
  if op == "resolve" and code == "EAI_NONAME" then
    local why = hosts.not_canonical(hosts.bare(where))
    if why then return "resolve " .. where .. ": not a canonical IPv4 address (" .. why .. ")" end
  end
  if where == nil then return op .. ": " .. M.text(op, code) end
  return op .. " " .. where .. ": " .. M.text(op, code)
end

--- A string quoted for a message, its first 40 bytes at most: a value
-- in an argument error, the start of a reply that is not what it should
-- be. (%q, with its escapes made the same on every version: 5.1 writes
-- NUL as \000 and a newline as a backslash-newline.)
function M.quote(v)
  if #v > 40 then v = v:sub(1, 40) .. "..." end
  return (string.format("%q", v):gsub("\\\n", "\\n"):gsub("\\000", "\\0"):gsub("%z", "\\0"))
end

--- A URL as output shows it: the password of its userinfo masked
-- ("redis://:***@127.0.0.1:6379/2", "postgres://app:***@db/app"); any
-- other string unchanged.
function M.url(s)
  local head, authority, rest = s:match("^(%a[%w+.-]*://)([^/?#]*)(.*)$")
  if not head then return s end
  -- the last "@" of the authority ends the userinfo, its first ":" the user
  local user, hostport = authority:match("^([^:@]*):.*@([^@]*)$")
  if not user then return s end
  return head .. user .. ":***@" .. hostport .. rest
end

--- A process that ended before it listened: its exit code, the signal
-- that killed it, or neither where this process cannot know it.
function M.exited_before(pid, code, signal)
  local status = code and tostring(code) or signal and ("signal " .. signal) or "unknown"
  return "process " .. pid .. " exited (status " .. status .. ") before it listened"
end

--- A wait for the listeners of a process that timed out: what it had
-- (a list of "address:port", or nil) and what it waited for.
function M.listeners_timeout(pid, ms, have, want)
  return string.format("process %d did not listen within %g ms (%s; waiting for %s)", pid, ms,
    have and "listening on " .. have or "no listeners", want)
end

--- What a wait of host's ports is called in a message: "127.0.0.1:80",
-- "[::1]:80,81", "port 80" (host omitted: both loopbacks).
function M.waited(host, ports)
  local list = table.concat(ports, ",")
  if host == nil then return "port " .. list end
  local bare = hosts.bare(host)
  if find(bare, ":", 1, true) then return "[" .. bare .. "]:" .. list end
  return bare .. ":" .. list
end

M.NO_FAMILY = "no address of a family this machine has"

--- find_free's failures: the kernel kept picking excluded ports, or the
-- range holds no free port; host nil is any local address.
function M.excluded_only(host)
  return "bind " .. (host or "*") .. ": the kernel kept picking excluded ports"
end

function M.no_free_port(host, from, to)
  return "bind " .. (host or "*") .. ": no free port in " .. from .. ".." .. to
end

--- The reasons owner gives where a socket's process is not known.
M.NOT_INSPECTABLE = "held by a process this one may not inspect (another user's)"
M.NOT_FOUND = "no process holds it now (it may have just exited)"

--- One line for people about an entry of owner, as the CLI's `who`
-- prints it: "8080 on 127.0.0.1 is held by pid 1234 (nginx: master
-- process)", or "... is held by uid 33 (pid unknown: reason)"; a UDP port
-- is written "27015/udp".
function M.holder(e)
  local at = string.format("%d%s on %s", e.port, e.proto == "udp" and "/udp" or "", e.address)
  if e.pid then
    return string.format("%s is held by pid %d (%s)", at, e.pid, e.command)
  end
  return string.format("%s is held by uid %d (pid unknown: %s)", at, e.uid, e.reason)
end

return M
