--- One probe of one port in any mode, written once over a transport: the
-- transport reports outcomes (see verdict.lua), the verdict answers, the
-- policy picks how a connect is closed. A transport is a table of
--   connect(host, port, budget_ms, close, sleep) -> outcome pairs
--   bind(host, port, proto)                       -> outcome pairs
--   listen(host, port, proto)                     -> outcome pairs (optional)
--   ipv6()                                        -> whether IPv6 works here
--   resolve(host)             -> the address literals to try, or nil, code
--   open(address, port, unix, deadline, sleep)
--                             -> a stream (transport/stream.lua), or nil
--                                and false (refused) or a code
--   now()                     -> milliseconds, the clock of deadlines
-- where close is "graceful" or "reset", sleep, when given, is how the
-- connect may pass the time without blocking the thread, and proto is
-- "tcp" or "udp" (args.lua lets UDP through in modes bind and listen only:
-- connect is TCP's alone).
--
-- A readiness probe (o.ready) and a connect probe of a Unix-domain socket
-- (o.unix) open a stream to each address in turn, within one deadline,
-- and run the exchange (ready.lua) on it until one is ready.
local verdict = require "tcp_port_used.verdict"
local policy = require "tcp_port_used.policy"
local ready = require "tcp_port_used.ready"

local answer, any = verdict.answer, verdict.any
local close_for, connected = policy.close, policy.connected
local result = ready.result

--- Returns probe(o, port, budget_ms, sleep) -> true / false / nil, err,
-- code, op for transport T; o holds host, mode, close and proto.
return function(T)
  local t_connect, t_bind, t_listen, ipv6 = T.connect, T.bind, T.listen, T.ipv6
  local t_open, t_resolve, t_now = T.open, T.resolve, T.now

  local function counted(r, ...)
    if r == true then connected() end
    return r, ...
  end

  local function connect(o, port, budget, sleep)
    local host = o.host
    return counted(answer("connect", host, port, ipv6,
      t_connect(host, port, budget, close_for(o.close), sleep)))
  end

  local function bind(o, port)
    local host = o.host
    return answer("bind", host, port, ipv6, t_bind(host, port, o.proto))
  end

  -- One address: true, or the outcome verdict.ready takes.
  local function attempt(o, exchange, address, port, deadline, sleep)
    local s, state = t_open(address, port, o.unix, deadline, sleep)
    if not s then
      if state == false then return { refused = true, address = address } end
      return { code = state, op = "connect", address = address }
    end
    connected()
    -- An exchange closes as an ordinary client: a reset would be logged.
    local how = o.close == "reset" and "reset" or nil
    if not exchange then
      s:close(how)
      return true
    end
    local r, err, code = exchange(s, port)
    s:close(how)
    r, err, code = result(r, err, code)
    if r == true then return true end
    if r == false then return { answered = true, reason = err } end
    -- the stream's own failure (its code) passes through with its
    -- operation; any other is the exchange's verdict on what it received,
    -- whose words are the detail (decided by code, never by comparing text)
    if s.code == code then return { code = code, op = s.op, address = address, detail = s.detail } end
    return { code = code, op = "receive", address = address, detail = err }
  end

  local function readiness(o, port, budget, sleep)
    local deadline = t_now() + budget
    local unix, host = o.unix, o.host
    local list
    if unix then
      list = { unix }
    else
      local code
      list, code = t_resolve(host)
      if not list then return answer("connect", host, port, ipv6, nil, code) end
    end
    local exchange = o.exchange
    if exchange == nil and o.ready then
      exchange = ready.exchange(o)
      o.exchange = exchange
    end
    local outcomes = {}
    for i = 1, #list do
      local out = attempt(o, exchange, list[i], port, deadline, sleep)
      if out == true then return true end
      outcomes[i] = out
    end
    return verdict.ready(host, port, unix, ipv6, outcomes)
  end

  return function(o, port, budget, sleep)
    -- (readiness and unix come only with mode connect: args.lua)
    local mode = o.mode
    if mode == "bind" then
      return answer("bind", o.host, port, ipv6, t_bind(o.host, port, o.proto))
    end
    if mode == "listen" then
      return answer("listen", o.host, port, ipv6, t_listen(o.host, port, o.proto))
    end
    if o.ready or o.unix then return readiness(o, port, budget, sleep) end
    if mode == "connect" then return connect(o, port, budget, sleep) end
    local r, err, code, op = connect(o, port, budget, sleep)
    if r == true then return true end
    return any(r, err, code, op, bind(o, port))
  end
end
