--- One probe of one port in any mode, written once over a transport: the
-- transport reports outcomes (see verdict.lua), the verdict answers, the
-- policy picks how a connect is closed. A transport is a table of
--   connect(host, port, budget_ms, close, sleep) -> outcome pairs
--   bind(host, port, proto)                       -> outcome pairs
--   listen(host, port, proto)                     -> outcome pairs (optional)
--   ipv6()                                        -> whether IPv6 works here
-- where close is "graceful" or "reset", sleep, when given, is how the
-- connect may pass the time without blocking the thread, and proto is
-- "tcp" or "udp" (args.lua lets UDP through in modes bind and listen only:
-- connect is TCP's alone).
local verdict = require "tcp_port_used.verdict"
local policy = require "tcp_port_used.policy"

local answer, any = verdict.answer, verdict.any
local close_for, connected = policy.close, policy.connected

--- Returns probe(o, port, budget_ms, sleep) -> true / false / nil, err,
-- code, op for transport T; o holds host, mode, close and proto.
return function(T)
  local t_connect, t_bind, t_listen, ipv6 = T.connect, T.bind, T.listen, T.ipv6

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

  return function(o, port, budget, sleep)
    local mode = o.mode
    if mode == "connect" then return connect(o, port, budget, sleep) end
    if mode == "bind" then
      return answer("bind", o.host, port, ipv6, t_bind(o.host, port, o.proto))
    end
    if mode == "listen" then
      return answer("listen", o.host, port, ipv6, t_listen(o.host, port, o.proto))
    end
    local r, err, code, op = connect(o, port, budget, sleep)
    if r == true then return true end
    return any(r, err, code, op, bind(o, port))
  end
end
