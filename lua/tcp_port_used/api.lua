--- The one declaration of tcp-port-used's public surface: every function
-- of the module, of the two adapters and of the CLI, with its parameters,
-- options (type, default, allowed values), returns and error codes.
-- `make docs` (scripts/docgen.lua) renders it to types/, docs/api.md and
-- lua/tcp_port_used/cli_help.lua; args.lua reads its defaults, allowed
-- values and option names from it. Plain data, no dependency: it loads
-- without the C core (the CLI's --help needs it there).
local M = {}

--- Types: LuaLS type expressions, built by small constructors so that the
-- types file and the reference say the same.

local function union(...) return table.concat({ ... }, "|") end
local function list(t) return t .. "[]" end
local function dict(k, v) return "table<" .. k .. ", " .. v .. ">" end
local function quoted(values)
  local q = {}
  for i, v in ipairs(values) do q[i] = '"' .. v .. '"' end
  return table.concat(q, "|")
end

--- A parameter (or a field, or an option): name, type, one line.
local function param(name, type, desc, extra)
  local p = { name = name, type = type, desc = desc }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end
local function opt(name, type, desc, extra)
  local p = param(name, type, desc, extra)
  p.optional = true
  return p
end

--- This project's return convention, written once: value, or nil, err,
-- code (luv's ret_or_fail). A failure to probe is never a false "free".
local function ret_or_fail(type, name, desc, err_desc)
  return {
    fail = true,
    param(name, type .. "|nil", desc),
    opt("err", "string", err_desc or "on failure: what and where (\"connect db:5432: host unreachable\")"),
    opt("code", "string", "on failure: the error code (see Error codes)"),
  }
end

--- Allowed values, read by args.lua.
M.MODES = { "connect", "bind", "any", "listen" }
M.UDP_MODES = { "bind", "listen" }
M.CLOSES = { "auto", "graceful", "reset" }
M.PROTOS = { "tcp", "udp" }
M.READY_KINDS = { "http", "redis", "postgres" }
M.PROCESS_PROTOS = { "tcp", "udp", "any" }

--- The error codes a function may return as its third value: the C core's
-- (csrc/codes.c) and the Lua side's (words.lua), { code, description }.
M.codes = {
  { "ECONNREFUSED", "connection refused (a check answers false instead; seen in last_err)" },
  { "ETIMEDOUT", "no answer within the attempt's time (a full backlog, SYNs dropped), or a wait's deadline" },
  { "EHOSTUNREACH", "no route to the host" },
  { "ENETUNREACH", "no route to the network" },
  { "EHOSTDOWN", "the host is down" },
  { "ENETDOWN", "the network is down" },
  { "EACCES", "permission denied (a bind probe on a privileged port)" },
  { "EPERM", "operation not permitted (a firewall, a sandbox)" },
  { "EADDRINUSE", "address in use (find_free: no free port in the range)" },
  { "EADDRNOTAVAIL", "not an address of this machine (bind and listen probes)" },
  { "EAFNOSUPPORT", "address family not supported (no IPv6 here)" },
  { "EMFILE", "too many open files in this process (also while resolving a name)" },
  { "ENFILE", "too many open files in the system" },
  { "ENOBUFS", "no buffer space available" },
  { "ENOMEM", "out of memory" },
  { "EINVAL", "invalid argument (refused by the kernel)" },
  { "ECONNRESET", "connection reset (a readiness exchange cut short)" },
  { "ECONNABORTED", "connection aborted" },
  { "EPIPE", "broken pipe (the server closed during an exchange)" },
  { "EPROTO", "the answer is not that protocol (an HTTP server on the Redis port)" },
  { "EPROTOTYPE", "wrong socket type (a unix path that is not a stream socket)" },
  { "EAGAIN", "resource temporarily unavailable" },
  { "EINTR", "interrupted (Neovim: the wait was interrupted by the user)" },
  { "ECANCELED", "canceled: the nginx worker is exiting (an on_used/on_free callback)" },
  { "E2BIG", "exec (CLI -- command): the argument list is too long" },
  { "ENOEXEC", "exec (CLI -- command): the file is not an executable format" },
  { "ETXTBSY", "exec (CLI -- command): the executable is being written" },
  { "EBADF", "bad file descriptor" },
  { "ENOENT", "no such file (unix = PATH without a socket file)" },
  { "ENOTDIR", "a part of the unix path is not a directory" },
  { "ENOTSOCK", "the unix path is not a socket" },
  { "ENAMETOOLONG", "the unix path is too long" },
  { "ELOOP", "too many symbolic links in the unix path" },
  { "ESRCH", "no such process (listeners, wait_for_listeners: it exited)" },
  { "EPROTONOSUPPORT", "protocol not supported" },
  { "EOPNOTSUPP", "operation not supported" },
  { "ENOTSUP", "not supported on this system (listen mode, owner and listeners need Linux)" },
  { "EBADMSG", "malformed reply from the kernel" },
  { "EMSGSIZE", "reply from the kernel larger than expected" },
  { "ECLOSED", "the probe was closed before it answered" },
  { "EAI_NONAME", "the name does not resolve (also a non-canonical numeric host: 127.0.0.010)" },
  { "EAI_AGAIN", "temporary failure in name resolution" },
  { "EAI_FAIL", "non-recoverable failure in name resolution" },
  { "EAI_FAMILY", "address family not supported by the resolver" },
  { "EAI_MEMORY", "out of memory while resolving" },
  { "EAI_SERVICE", "service not supported" },
  { "EAI_NODATA", "no address associated with the name" },
  { "EAI_ADDRFAMILY", "no address of that family for the name" },
}

-- The codes each kind of call can return, by what it does.
local RESOLVE = { "EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_ADDRFAMILY", "EMFILE", "ENFILE" }
local function codes(...)
  local out, seen = {}, {}
  for _, group in ipairs { ... } do
    for _, c in ipairs(group) do
      if not seen[c] then seen[c], out[#out + 1] = true, c end
    end
  end
  return out
end
local PROBE = codes(RESOLVE, { "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EACCES", "EPERM",
  "EADDRNOTAVAIL", "EAFNOSUPPORT", "ENOBUFS", "ECONNRESET", "EPROTO", "ENOENT", "ENOTSUP" })
local WAIT = codes(PROBE, { "EINTR", "ECANCELED" })
local KERNEL = { "ENOTSUP", "EADDRNOTAVAIL", "EBADMSG", "EMSGSIZE", "EACCES", "ESRCH" }

--- Aliases of types/tcp_port_used.lua.
M.aliases = {
  { name = "tcp_port_used.mode", type = quoted(M.MODES),
    desc = "How a probe decides: `\"connect\"` (a server accepts), `\"bind\"` (a SO_REUSEADDR socket " ..
      "cannot bind; for UDP, a socket without it), `\"any\"` (either), `\"listen\"` (the kernel lists a " ..
      "listening socket, for UDP a bound one; this machine only, sends nothing). UDP takes `\"bind\"` " ..
      "(its default) and `\"listen\"` only." },
  { name = "tcp_port_used.proto", type = quoted(M.PROTOS),
    desc = "The transport protocol of the port: `\"tcp\"` (default) or `\"udp\"` (modes bind and listen)." },
  { name = "tcp_port_used.close", type = quoted(M.CLOSES),
    desc = "How a connected probe closes: `\"auto\"` (FIN, or a reset above about 100 probes a second), " ..
      "`\"graceful\"` (always FIN), `\"reset\"` (always RST)." },
  { name = "tcp_port_used.callback",
    type = "fun(ok: true|nil, err: string|nil, code: string|nil, explanation: tcp_port_used.explanation|nil)",
    desc = "What a wait's callback (on_used, on_free) receives: the wait's returns." },
  { name = "tcp_port_used.exchange",
    type = "fun(s: tcp_port_used.stream): boolean|nil, string?, string?",
    desc = "Your own exchange: `true` ready, `false [, reason]` not ready, or `nil, err, code` " ..
      "(a missing code is `EPROTO`)." },
  { name = "tcp_port_used.ready", type = union(quoted(M.READY_KINDS), "tcp_port_used.exchange"),
    desc = "How `ready` asks the server: `\"http\"` (GET `path`, a `status`), `\"redis\"` (PING), " ..
      "`\"postgres\"` (a StartupMessage) or your exchange." },
  { name = "tcp_port_used.status", type = union("integer", list("integer"),
      quoted { "1xx", "2xx", "3xx", "4xx", "5xx" }),
    desc = "HTTP statuses that mean ready: one, a list, or a class such as `\"2xx\"`." },
  { name = "tcp_port_used.explain_state",
    type = quoted { "listening", "not-ready", "backlog-full", "other-family", "other-address",
      "other-proto", "not-listening", "refused", "filtered", "unreachable", "no-name", "error" },
    desc = "Why a port is (not) ready: the kernel's tables decide for a local host, the probe for a " ..
      "remote one." },
}

--- Options: one list per options table, by the name args.OPTIONS gives
-- it. `ready = true` marks the readiness keys (args.OPTIONS says "ready").

local PORT = "integer"
local READINESS = {
  opt("ready", "tcp_port_used.ready", "ask the server if it is ready (TCP, mode connect)",
    { ready = true, values = M.READY_KINDS }),
  opt("path", "string", "`ready = \"http\"`: the path, starting with \"/\"", { ready = true, default = "/" }),
  opt("status", "tcp_port_used.status", "`ready = \"http\"`: the statuses that mean ready",
    { ready = true, default = "200..399" }),
  opt("user", "string", "`ready = \"postgres\"`: the role named", { ready = true, default = "postgres" }),
  opt("database", "string", "`ready = \"postgres\"`: the database named",
    { ready = true, default = "postgres" }),
  opt("unix", "string", "the path of a Unix-domain socket, instead of host and port", { ready = true }),
}

local function mode_opt(desc)
  return opt("mode", "tcp_port_used.mode", desc or "how the probe decides",
    { default = "connect", default_udp = "bind", values = M.MODES })
end
local PROTO = opt("proto", "tcp_port_used.proto", "the port's protocol", { default = "tcp", values = M.PROTOS })
local CLOSE = opt("close", "tcp_port_used.close", "how a connected probe closes",
  { default = "auto", values = M.CLOSES })
local HOST = opt("host", "string", "IPv4, IPv6 (`::1` or `[::1]`) or a name; nil: 127.0.0.1 and ::1")

local function with(base, extra)
  local out = {}
  for _, o in ipairs(base) do out[#out + 1] = o end
  for _, o in ipairs(extra or {}) do out[#out + 1] = o end
  return out
end

M.options = {
  check = { class = "tcp_port_used.check_opts", with({
    opt("port", PORT, "1..65535 (not with `unix`)"),
    HOST,
    opt("timeout_ms", "number", "bounds the attempt, a readiness exchange included", { default = 1000 }),
    mode_opt(), CLOSE, PROTO,
  }, READINESS) },
  wait = { class = "tcp_port_used.wait_opts", with({
    opt("port", PORT, "the port (or give `ports`)"),
    opt("ports", list(PORT), "wait until every one is in the state"),
    HOST,
    opt("in_use", "boolean", "the wanted state (wait_for_status only; the others fix it)"),
    opt("retry_ms", "number", "between probes; nil: from 5 ms growing to 250 ms"),
    opt("timeout_ms", "number", "the whole wait, on a monotonic clock", { default = 2000 }),
    opt("attempt_ms", "number", "bounds one probe (and by the time left)", { default = 1000 }),
    mode_opt(), CLOSE, PROTO,
    opt("sleep", "fun(ms: number)", "how to sleep between probes (any scheduler)"),
    opt("on_retry", "fun(info: tcp_port_used.retry_info)", "called before each sleep"),
    opt("yield", "boolean", "false: never yield from a coroutine", { default = true }),
  }, READINESS) },
  check_many = { class = "tcp_port_used.many_opts", {
    opt("timeout_ms", "number", "bounds each probe", { default = 1000 }),
    mode_opt(), CLOSE, PROTO,
    opt("max_inflight", "integer", "probes in flight at once (never more than the open-file limit allows)",
      { default = 1024 }),
  } },
  find_free = { class = "tcp_port_used.find_free_opts", {
    opt("host", "string", "nil: every local address, both families"),
    opt("from", PORT, "search from..to for the lowest free port; the default when only `to` is given",
      { default = 1024 }),
    opt("to", PORT, "the end of the range; the default when only `from` is given", { default = 65535 }),
    opt("exclude", list(PORT), "ports never to return"),
    opt("proto", "tcp_port_used.proto", "\"udp\": a port no UDP socket holds", { default = "tcp", values = M.PROTOS }),
  } },
  owner = { class = "tcp_port_used.owner_opts", {
    param("port", PORT, "1..65535"),
    opt("host", "string", "nil: any local address"),
    PROTO,
  } },
  -- issue 18
  explain = { class = "tcp_port_used.explain_opts", {
    param("port", PORT, "1..65535"),
    HOST,
    PROTO,
    opt("ready", "tcp_port_used.ready", "also ask the server if it is ready", { values = M.READY_KINDS }),
    opt("timeout_ms", "number", "bounds the one probe explain makes", { default = 1000 }),
  } },
  -- issue 19
  listeners = { class = "tcp_port_used.listeners_opts", {
    param("pid", "integer", "the process"),
    opt("tree", "boolean", "its descendants too", { default = true }),
    opt("proto", "\"tcp\"|\"udp\"|\"any\"", "listening TCP sockets, bound UDP sockets, or both",
      { default = "tcp", values = M.PROCESS_PROTOS }),
  } },
  wait_for_listeners = { class = "tcp_port_used.wait_for_listeners_opts", {
    param("pid", "integer", "the process"),
    opt("count", "integer", "the number of listeners to wait for (or give `ports`)", { default = 1 }),
    opt("ports", list(PORT), "wait until every one of these listens"),
    opt("timeout_ms", "number", "the whole wait", { default = 10000 }),
    opt("tree", "boolean", "its descendants too", { default = true }),
    opt("proto", "\"tcp\"|\"udp\"|\"any\"", "what counts as a listener",
      { default = "tcp", values = M.PROCESS_PROTOS }),
    opt("interval_ms", "number", "between looks; nil: as a wait's default interval"),
  } },
}

--- The declaration of option name of the options table set, for the
-- code that reads defaults and allowed values (args.lua, at load).
function M.option(set, name)
  for _, o in ipairs(M.options[set][1]) do
    if o.name == name then return o end
  end
  error("api.lua declares no option " .. tostring(set) .. "." .. tostring(name), 2)
end

--- Tables the functions return or take, beside the option tables.
local STREAM_ERR = "on failure: \"closed\", \"timeout\" or what failed"
M.classes = {
  { name = "tcp_port_used.stream",
    desc = "What a readiness exchange is given: LuaSocket's and cosockets' send and receive, over " ..
      "whichever transport runs it.",
    methods = {
      { name = "send", desc = "Sends all of data: the bytes sent, or `nil, err, code` (`\"closed\"`, " ..
          "`\"timeout\"`; `\"ECONNRESET\"`, `\"ETIMEDOUT\"` ...).",
        params = { param("data", "string") }, returns = ret_or_fail("integer", "sent", nil, STREAM_ERR) },
      { name = "receive", desc = "`\"*l\"`: a line (CR LF removed; longer than 8 KiB is `EPROTO`), or a " ..
          "byte count (at most 1 MiB); or `nil, err, code`.",
        params = { opt("pattern", "\"*l\"|integer") }, returns = ret_or_fail("string", "data", nil, STREAM_ERR) },
    } },
  { name = "tcp_port_used.retry_info", desc = "What `on_retry` is given before each sleep of a wait.",
    fields = {
      param("attempt", "integer", "probes of every pending port so far"),
      param("elapsed_ms", "number", "since the wait started"),
      param("wait_ms", "number", "the sleep about to start"),
      param("ports", list("integer"), "the ports not yet in the wanted state"),
      opt("err", "string", "the last error, if the last probe failed"),
      opt("code", "string", "its code"),
    } },
  { name = "tcp_port_used.range", desc = "A range of ports for check_many.",
    fields = { param("from", "integer"), param("to", "integer") } },
  { name = "tcp_port_used.owner", desc = "One listening socket, as owner() reports it.",
    fields = {
      param("address", "string", "the local address it listens on"),
      param("family", "\"inet\"|\"inet6\""),
      param("port", "integer"),
      param("proto", "tcp_port_used.proto"),
      param("uid", "integer"),
      param("inode", "integer"),
      opt("pid", "integer", "the process holding it that the other holders descend from (a master, not its " ..
        "workers); nil where it may not be inspected"),
      opt("pids", list("integer"), "every pid holding it"),
      opt("command", "string", "the holder's command name"),
      opt("reason", "string", "why pid is nil"),
    } },
  { name = "tcp_port_used.listener", desc = "A socket on the port, as explain and listeners report it.",
    fields = {
      param("address", "string"),
      param("port", "integer"),
      param("family", "\"inet\"|\"inet6\""),
      param("proto", "tcp_port_used.proto"),
      opt("pid", "integer", "nil where the holder may not be inspected"),
      opt("command", "string"),
      opt("user", "string", "explain: the holder's user"),
      opt("queue", "integer", "explain: connections waiting in the accept queue"),
      opt("backlog", "integer", "explain: the accept queue's length"),
    } },
  { name = "tcp_port_used.explanation", desc = "What explain returns.",
    fields = {
      param("state", "tcp_port_used.explain_state"),
      param("text", "string", "one sentence for people"),
      param("asked", "{ host: string, port: integer, proto: tcp_port_used.proto }"),
      param("listeners", list("tcp_port_used.listener"), "every socket on that port, any address"),
      param("time_wait", "integer", "client sockets still in TIME_WAIT to that port"),
      param("probe", "table", "the one probe explain made, as check returns it: `{ true }` or `{ nil, msg, code }`"),
    } },
}

--- Functions. A function of the module that an adapter shares is this
-- one table, referenced from the adapter's list.

local WAIT_RETURNS = {
  param("ok", "true|nil", "true once the state is reached"),
  opt("err", "string", "after a timeout: \"timeout after N ms waiting for WHERE: <why>\" (the " ..
    "explanation's text); else the error that ended the wait at once"),
  opt("code", "string", "the error code: \"ETIMEDOUT\" after a timeout (see Error codes)"),
  opt("explanation", "tcp_port_used.explanation", "after a timeout: why, as explain says it"),
}
local POS_PORT = param("port", PORT, "1..65535")
local POS_HOST = param("host", "string|nil", "nil: 127.0.0.1 and ::1")
local RETRY = opt("retry_ms", "number", "between probes; nil: from 5 ms growing to 250 ms")
local TIMEOUT = opt("timeout_ms", "number", "the whole wait", { default = 2000 })
local WAIT_OPTS = { { param("opts", M.options.wait.class) } }

local F = {}
F.check = { name = "check",
  desc = "Is something listening on the port? `true` in use, `false` free (every address refused), " ..
    "`nil, err, code` when it cannot be told: an error is never reported as free. With `ready`: " ..
    "`true` ready, `false, reason` not ready (\"status 503\").",
  params = { POS_PORT, opt("host", "string", "nil: 127.0.0.1 and ::1") },
  overloads = { { param("opts", M.options.check.class) } }, options = "check",
  returns = {
    fail = true,
    param("in_use", "boolean|nil", "true in use (or ready), false free (or not ready)"),
    opt("err", "string", "the error, or the reason a server is not ready"),
    opt("code", "string", "on failure: the error code"),
  },
  codes = PROBE }

local function wait_fn(name, desc, params)
  return { name = name, desc = desc, params = params, overloads = WAIT_OPTS, options = "wait",
           returns = WAIT_RETURNS, codes = WAIT }
end
F.wait_until_used = wait_fn("wait_until_used",
  "Waits until the port is in use (or ready). The first probe runs at once; transient errors are " ..
  "retried, an error retrying cannot mend ends the wait at once. Yields inside a coroutine, blocks " ..
  "outside one.", { POS_PORT, RETRY, TIMEOUT })
F.wait_until_free = wait_fn("wait_until_free", "Waits until the port is free; returns as wait_until_used.",
  { POS_PORT, RETRY, TIMEOUT })
F.wait_until_used_on_host = wait_fn("wait_until_used_on_host", "wait_until_used on a given host.",
  { POS_PORT, POS_HOST, RETRY, TIMEOUT })
F.wait_until_free_on_host = wait_fn("wait_until_free_on_host", "wait_until_free on a given host.",
  { POS_PORT, POS_HOST, RETRY, TIMEOUT })
F.wait_for_status = wait_fn("wait_for_status",
  "Waits until the port is in use (`in_use` true) or free (false).",
  { POS_PORT, POS_HOST, param("in_use", "boolean", "the wanted state"), RETRY, TIMEOUT })

F.run = { name = "run",
  desc = "Runs functions or suspended coroutines concurrently (each wait inside them yields), " ..
    "sleeping until the earliest is due. Returns one table per argument with its return values, " ..
    "`{ n = k, ... }`; an error inside one is raised from run.",
  params = { param("...", "function|thread", "the tasks") },
  returns = { param("results", list("{ n: integer, [integer]: any }"), "one per argument, in order") } }

F.check_many = { name = "check_many",
  desc = "Probes many ports at once (non-blocking connects, up to `max_inflight` in flight, never more " ..
    "than the open-file limit leaves room for). `used[port]` is true or false; where a probe failed " ..
    "`used[port]` is nil and `errors[port]`, `codes[port]` say why (empty tables when nothing failed). " ..
    "A host that does not resolve: `nil, err, code`.",
  params = { param("ports", union(list(PORT), "tcp_port_used.range"), "a list, or { from =, to = }"),
             opt("host", "string", "nil: 127.0.0.1 and ::1"),
             opt("opts", M.options.check_many.class) },
  options = "check_many",
  returns = {
    fail = true,
    param("used", union(dict("integer", "boolean"), "nil"), "by port"),
    param("errors", union(dict("integer", "string"), "string"), "by port; the error when used is nil"),
    opt("codes", union(dict("integer", "string"), "string"), "by port; the code when used is nil"),
  },
  codes = PROBE }

F.range = { name = "range", desc = "The list of ports from..to, for check_many.",
  params = { param("from", PORT), param("to", PORT) },
  returns = { param("ports", list("integer")) } }

F.find_free = { name = "find_free",
  desc = "A port free now, by bind probes: the lowest free one of `from..to` that is not excluded, or, " ..
    "without a range, one the kernel picks. Another process may take it before you bind it: bind " ..
    "port 0 yourself and keep the socket where you can.",
  params = { opt("opts", M.options.find_free.class) }, options = "find_free",
  returns = with(ret_or_fail("integer", "port", "a free port"),
    { opt("op", "string", "on failure: the operation, \"bind\" or \"resolve\"") }),
  codes = codes(RESOLVE, { "EADDRINUSE", "EACCES", "EADDRNOTAVAIL", "EAFNOSUPPORT" }) }
F.find_free.returns.fail = true

F.owner = { name = "owner",
  desc = "Who listens on the port (host nil: any local address): one entry per listening socket (for " ..
    "UDP, bound and not connected), an empty list when none. Linux.",
  params = { POS_PORT, opt("host", "string", "nil: any local address") },
  overloads = { { param("opts", M.options.owner.class) } }, options = "owner",
  returns = ret_or_fail(list("tcp_port_used.owner"), "owners"),
  codes = codes(RESOLVE, KERNEL) }

F.explain = { name = "explain",
  desc = "Why a port is (not) ready: the kernel's tables (local hosts) and one probe, as one table. " ..
    "Never raises for a runtime failure: the state `error` and `probe` say what failed.",
  params = { POS_PORT, opt("host", "string", "nil: 127.0.0.1 and ::1") },
  overloads = { { param("opts", M.options.explain.class) } }, options = "explain",
  returns = { param("explanation", "tcp_port_used.explanation") } }

F.listeners = { name = "listeners",
  desc = "The listening TCP sockets (bound UDP sockets for \"udp\") held by a process and, with `tree`, " ..
    "its descendants. Linux (sock_diag and /proc/PID/fd).",
  params = { param("opts", M.options.listeners.class) }, options = "listeners",
  returns = ret_or_fail(list("tcp_port_used.listener"), "listeners"),
  codes = { "ESRCH", "ENOTSUP", "EACCES" } }

F.wait_for_listeners = { name = "wait_for_listeners",
  desc = "Waits until the process tree holds `count` listeners (or every port of `ports`), yielding as " ..
    "the waits do; ends at once when the process exits.",
  params = { param("opts", M.options.wait_for_listeners.class) }, options = "wait_for_listeners",
  returns = ret_or_fail(list("tcp_port_used.listener"), "listeners"),
  codes = { "ESRCH", "ETIMEDOUT", "ENOTSUP", "EACCES" } }

F.on_used = { name = "on_used",
  desc = "Waits until the port is in use without blocking, then calls cb once, from the host's loop " ..
    "and never before on_used has returned, with what wait_until_used would return.",
  params = { POS_PORT, param("opts", M.options.wait.class .. "|nil"), param("cb", "tcp_port_used.callback") },
  overloads = { { param("opts", M.options.wait.class), param("cb", "tcp_port_used.callback") } },
  options = "wait",
  returns = { param("started", "true|nil", "true at once; ngx: nil when nginx refuses the timer, " ..
    "and cb is then never called"), opt("err", "string", "why the timer was refused (ngx)") },
  codes = WAIT }
F.on_free = { name = "on_free", desc = "As on_used, until the port is free.",
  params = F.on_used.params, overloads = F.on_used.overloads, options = "wait",
  returns = F.on_used.returns, codes = WAIT }

local WAITS = { F.wait_until_used, F.wait_until_free, F.wait_until_used_on_host,
                F.wait_until_free_on_host, F.wait_for_status }
local function fns(...)
  local out = {}
  for _, group in ipairs { ... } do
    for _, f in ipairs(group) do out[#out + 1] = f end
  end
  return out
end

-- luv's run drives tasks on the loop: functions only (a coroutine of the
-- caller's is resumed by the loop, not by run).
F.uv_run = { name = "run", id = "uv-run",
  desc = "Runs each function concurrently on the loop (blocking as the waits do outside a coroutine) " ..
    "and returns one table of results per argument, `{ n = k, ... }`. A function may call this " ..
    "module's waits, or yield milliseconds as tcp_port_used's own waits do in a coroutine.",
  params = { param("...", "function", "the tasks") },
  returns = F.run.returns }

F.uv_spawn = { name = "spawn", id = "uv-spawn",
  desc = "uv.spawn that hands the child's exit status to wait_for_listeners{ pid } (libuv reaps the " ..
    "child before a wait could look). With the C core.",
  params = { param("path", "string", "the program"), param("options", "table", "uv.spawn's options"),
             opt("on_exit", "fun(code: integer, signal: integer)", "called as uv.spawn's exit callback") },
  returns = { param("handle", "userdata|nil", "uv.spawn's process handle, or nil on failure"),
              param("pid", "integer|string", "the child's pid, or uv.spawn's error") } }

--- Functions several modules share, each group one LuaLS class that the
-- modules' classes inherit, so that no declaration is rendered twice.
M.groups = {
  { class = "tcp_port_used.probing",
    desc = "What tcp_port_used and both adapters share, with the same arguments and answers: check, " ..
      "the five waits, explain, listeners and wait_for_listeners (tcp_port_used.uv: listeners and " ..
      "wait_for_listeners with the C core).",
    funcs = fns({ F.check }, WAITS, { F.explain, F.listeners, F.wait_for_listeners }) },
  { class = "tcp_port_used.callbacks",
    desc = "The callback forms of both adapters: the wait runs on the host's loop, the callback once.",
    funcs = { F.on_used, F.on_free } },
}
local PROBING, CALLBACKS = M.groups[1], M.groups[2]

--- A module: its own functions after those of the groups it has.
local function module(t)
  local lists = {}
  for i, g in ipairs(t.groups) do lists[i] = g.funcs end
  lists[#lists + 1] = t.own
  t.funcs = fns((table.unpack or unpack)(lists)) -- luacheck: ignore 143
  return t
end

M.modules = {
  module { name = "tcp_port_used", file = "types/tcp_port_used.lua",
    desc = "Is something listening on this TCP (or UDP) port, and wait until it is, or until it is free.",
    fields = { param("_VERSION", "string") },
    groups = { PROBING },
    own = { F.run, F.check_many, F.range, F.find_free, F.owner } },
  module { name = "tcp_port_used.ngx", file = "types/tcp_port_used/ngx.lua",
    desc = "OpenResty: probes through cosockets and sleeps with ngx.sleep in the phases that have them " ..
      "(UDP ports and modes bind and listen through the C core, which never waits); blocks in " ..
      "init_by_lua; on_used/on_free run the wait in an ngx.timer.at handler (init_worker_by_lua).",
    fields = { param("_VERSION", "string") },
    groups = { PROBING, CALLBACKS }, own = {} },
  module { name = "tcp_port_used.uv", file = "types/tcp_port_used/uv.lua",
    desc = "luv and Neovim (vim.uv or vim.loop): never blocks the loop; inside a coroutine resumed from " ..
      "the loop the waits suspend it; on_used/on_free call back from the loop (in Neovim through " ..
      "vim.schedule). Works without the C core (listen mode needs it).",
    fields = { param("_VERSION", "string"),
               param("has_core", "boolean", "whether the C core loaded (listen mode needs it; TCP and " ..
                 "UDP bind probes use luv handles)") },
    groups = { PROBING, CALLBACKS }, own = { F.uv_run, F.uv_spawn } },
}

--- The CLI: each command a function whose parameters are flags.
local function flag(name, desc, extra)
  local f = { name = name, desc = desc }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

-- The CLI waits longer than the library's waits: a service's dependencies
-- in a container's entry point take seconds to come up.
local CLI_WAIT_MS = 15000
local function secs(ms) return ms % 1000 == 0 and string.format("%ds", ms / 1000) or ms .. "ms" end

local FLAGS = {
  timeout = flag("--timeout", "wait-*, run: the whole wait (default " .. secs(CLI_WAIT_MS) ..
    "); check: the one attempt (default " .. secs(M.option("check", "timeout_ms").default) .. ")",
    { short = "-t", arg = "TIME", key = "timeout", default_ms = CLI_WAIT_MS }),
  retry = flag("--retry", "time between probes (default: from 5 ms, growing to 250 ms, so a port " ..
    "that opens soon is seen soon)", { arg = "TIME", key = "retry" }),
  mode = flag("--mode", "connect (default), bind, any, or listen (this machine only: asks the " ..
    "kernel, connects to nothing)", { arg = "MODE", key = "mode", values = M.MODES }),
  udp = flag("--udp", "UDP ports instead of TCP: mode bind (the default with --udp) or listen; " ..
    "connect has no handshake to observe over UDP", { key = "proto" }),
  ready = flag("--ready", "ask the server behind a plain port or unix:PATH if it is ready: " ..
    table.concat(M.READY_KINDS, ", "),
    { arg = "KIND", key = "ready", values = M.READY_KINDS }),
  status = flag("--status", "the HTTP statuses that mean ready: 200, 200,204 or a class such as 2xx " ..
    "(default 200..399)", { arg = "LIST", key = "status" }),
  from = flag("--from", "the lowest free port from N (default: the kernel picks one)",
    { arg = "N", key = "from" }),
  to = flag("--to", "up to N", { arg = "N", key = "to" }),
  command = flag("--", "once ready, replace this process with CMD (not run when the wait times out)",
    { arg = "CMD ARGS...", key = "command" }),
  -- issue 19
  notify = flag("--notify", "tell the supervisor once ready: systemd (READY=1 to $NOTIFY_SOCKET), " ..
    "s6=FD (a newline to FD) or none", { arg = "HOW", key = "notify", default = "none" }),
  port = flag("--port", "a port the child must listen on (repeat)", { arg = "P", key = "port" }),
  listeners = flag("--listeners", "the number of listeners to wait for", { arg = "N", key = "listeners",
    default = "1" }),
  ports_file = flag("--ports-file", "write the ports, one per line, atomically once ready",
    { arg = "PATH", key = "ports_file" }),
  print_ports = flag("--print-ports", "write the ports to stderr once ready", { key = "print_ports" }),
  run_command = flag("--", "the child to start and supervise", { arg = "COMMAND ARGS...", key = "command" }),
}

local function exits(ok, no, fail)
  return { { 0, ok }, { 1, no }, { 2, fail or "usage error, or a failure to probe" } }
end

M.cli = {
  name = "tcp-port-used",
  usage = "tcp-port-used COMMAND [OPTIONS]",
  globals = {
    flag("--quiet", "print nothing but usage errors (find-free still prints the port; the exit " ..
      "status tells the rest)", { short = "-q" }),
    flag("--help", "print this (or a command's help) and exit 0", { short = "-h" }),
    flag("--version", "print the version and exit 0"),
  },
  commands = {
    { name = "check", synopsis = "check RESOURCE [HOST]",
      desc = "is something listening (ready) there? 0 yes, 1 no",
      flags = { FLAGS.timeout, FLAGS.mode, FLAGS.udp, FLAGS.ready, FLAGS.status },
      exits = exits("in use (ready, for a URL or with --ready)", "free (not ready)") },
    { name = "wait-used", synopsis = "wait-used RESOURCE... [-- CMD ARGS...]",
      desc = "wait until every one is in use (ready); 0 done, 1 timed out",
      flags = { FLAGS.timeout, FLAGS.retry, FLAGS.mode, FLAGS.udp, FLAGS.ready, FLAGS.status, FLAGS.command },
      exits = exits("every one in use (ready)", "timed out") },
    { name = "wait-free", synopsis = "wait-free RESOURCE... [-- CMD ARGS...]",
      desc = "wait until every one is free (not ready); 0 done, 1 timed out",
      flags = { FLAGS.timeout, FLAGS.retry, FLAGS.mode, FLAGS.udp, FLAGS.ready, FLAGS.status, FLAGS.command },
      exits = exits("every one free (not ready)", "timed out") },
    { name = "find-free", synopsis = "find-free [HOST] [--from N] [--to N]",
      desc = "print a port free now; 1 when none is free in the range",
      flags = { FLAGS.from, FLAGS.to, FLAGS.udp },
      exits = exits("a port printed", "no free port in --from..--to") },
    { name = "who", synopsis = "who PORT [HOST]",
      desc = "who listens there (this machine); 0 held, 1 free",
      flags = { FLAGS.udp },
      exits = exits("held", "nothing listens") },
    { name = "why", synopsis = "why [HOST:]PORT",
      desc = "why a port is (not) ready: the sentence, then one line per listener",
      flags = { FLAGS.udp, FLAGS.ready, FLAGS.timeout },
      exits = exits("listening", "any other state", "usage error") },
    { name = "run", synopsis = "run [OPTIONS] -- COMMAND [ARGS...]",
      desc = "start COMMAND, wait until it listens, tell the supervisor; exits with the child's status",
      flags = { FLAGS.notify, FLAGS.listeners, FLAGS.port, FLAGS.udp, FLAGS.ready, FLAGS.timeout,
                FLAGS.ports_file, FLAGS.print_ports, FLAGS.run_command },
      exits = { { 0, "the child exited with 0" }, { 1, "timed out (the child is stopped)" },
                { 2, "usage error" }, { "N", "the child's status (128+N for signal N)" } } },
    { name = "help", synopsis = "help [COMMAND]", desc = "print the help of COMMAND (or this) and exit 0",
      flags = {}, exits = { { 0, "help printed" }, { 2, "unknown command" } } },
  },
  notes = {
    "TIME is milliseconds, or a number with a unit: 500, 500ms, 30s, 2m.",
    "HOST is a name, an IPv4 address, or an IPv6 address in brackets ([::1]:6379). Without a host, " ..
      "a port counts as in use when a server listens on 127.0.0.1 or on ::1.",
  },
  resources = {
    intro = "RESOURCE is [HOST:]PORT or one of these URLs; the URLs but tcp:// ask the server if it " ..
      "is ready, with the smallest exchange that tells:",
    { "tcp://HOST:PORT", "as HOST:PORT" },
    { "http://HOST[:PORT][/PATH]", "GET PATH; ready on 200..399 (port 80)" },
    { "redis://HOST[:PORT]", "PING; ready on +PONG or an auth error, not while -LOADING (6379)" },
    { "postgres://[USER@]HOST[:PORT][/DATABASE]", "a startup message (also postgresql://); not ready " ..
      "while starting up (5432)" },
    { "unix:PATH", "a Unix-domain socket" },
    outro = "Passwords in URLs are never sent. Example, as a container's entry point:\n" ..
      "  tcp-port-used wait-used postgres://db:5432 redis://cache:6379 \\\n" ..
      "    http://api:8080/healthz --timeout 60s -- ./serve",
  },
}
M.cli.flags = FLAGS

return M
