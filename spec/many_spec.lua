local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

local has_ipv6 = core.ipv6()
local unpack = table.unpack or unpack

-- An nftables table in a fresh network namespace that drops SYNs to
-- 20000..20999 there (fixed ports are safe: nothing else lives in it).
local DROP = "nft add table inet t && nft add chain inet t in " ..
  "'{ type filter hook input priority 0; }' && " ..
  "nft add rule inet t in tcp dport 20000-20999 drop && "

describe("check_many", function()
  local l, r = H.each_listener_and_refused(before_each, after_each)

  it("answers for every port: true in use, false refused, no errors", function()
    local used, errs, codes = tpu.check_many({ l.port, r.port }, "127.0.0.1")
    assert.same({ [l.port] = true, [r.port] = false }, used)
    assert.same({}, errs)
    assert.same({}, codes)
  end)

  it("checks both loopbacks when host is omitted", function()
    local used = tpu.check_many { l.port, r.port }
    assert.same({ [l.port] = true, [r.port] = false }, used)
  end)

  it("counts a server on ::1 alone when host is omitted", function()
    if not has_ipv6 then
      pending("this machine has no IPv6")
      return
    end
    local l6, r6 = H.listen("::1"), H.reserve("::1")
    local used = tpu.check_many { l6.port, r6.port }
    l6.close()
    r6.close()
    assert.same({ [l6.port] = true, [r6.port] = false }, used)
  end)

  it("tries every address of a name", function()
    local used = tpu.check_many({ l.port, r.port }, "localhost")
    assert.same({ [l.port] = true, [r.port] = false }, used)
  end)

  it("takes a { from =, to = } range and tpu.range lists", function()
    assert.same({ r.port }, tpu.range(r.port, r.port))
    assert.same({ 7, 8, 9 }, tpu.range(7, 9))
    local used = tpu.check_many({ from = l.port, to = l.port }, "127.0.0.1")
    assert.same({ [l.port] = true }, used)
    -- a wider range answers for each port, whatever its state
    local from = math.max(1, l.port - 20)
    local ports = tpu.range(from, from + 40)
    used = tpu.check_many(ports, "127.0.0.1")
    local _, errs = tpu.check_many { from = from, to = from + 40 }
    for _, p in ipairs(ports) do
      assert.is_true(used[p] ~= nil or errs[p] ~= nil, "no answer for " .. p)
    end
    assert.is_true(used[l.port])
  end)

  it("reports a per-attempt timeout per port as an error, never as free", function()
    local b = H.full_backlog()
    local t0 = core.now()
    local used, errs, codes = tpu.check_many({ b.port, l.port, r.port }, "127.0.0.1",
      { timeout_ms = 200 })
    local took = core.now() - t0
    b.close()
    assert.is_nil(used[b.port])
    assert.is_true(used[l.port])
    assert.is_false(used[r.port])
    assert.equals("ETIMEDOUT", codes[b.port])
    assert.equals("connect 127.0.0.1:" .. b.port .. ": timed out", errs[b.port])
    assert.same({ [b.port] = "ETIMEDOUT" }, codes)
    assert.is_true(took >= 190 and took < 2000, "took " .. took .. " ms")
  end)

  it("keeps probes in flight together, at most max_inflight at once", function()
    local b = H.full_backlog()
    local ports = { b.port, b.port, b.port, b.port }
    local t0 = core.now()
    local _, _, codes = tpu.check_many(ports, "127.0.0.1", { timeout_ms = 150 })
    local together = core.now() - t0
    t0 = core.now()
    local _, _, codes1 = tpu.check_many(ports, "127.0.0.1", { timeout_ms = 150, max_inflight = 1 })
    local one_by_one = core.now() - t0
    b.close()
    assert.equals("ETIMEDOUT", codes[b.port])
    assert.equals("ETIMEDOUT", codes1[b.port])
    assert.is_true(together < 500, "4 parallel probes took " .. together .. " ms")
    assert.is_true(one_by_one >= 590, "4 probes one at a time took only " .. one_by_one .. " ms")
  end)

  it("probes 300 ports whose SYNs are dropped, in waves under ulimit -n 64", function()
    if not H.can_unshare() then
      pending("no network namespaces here (unshare -n refused)")
      return
    end
    local out, rc = H.lua_in_netns([[
      local tpu, core = require "tcp_port_used", require "tcp_port_used.core"
      local t0 = core.now()
      local used, errs, codes = tpu.check_many({ from = 20000, to = 20299 }, "127.0.0.1",
        { timeout_ms = 100 })
      local n, other = 0, nil
      for p = 20000, 20299 do
        if used[p] == nil and codes[p] == "ETIMEDOUT" then n = n + 1 else other = errs[p] end
      end
      print(n, other, math.floor(core.now() - t0))]], DROP .. "ulimit -n 64 && ")
    assert.equals(0, rc, out)
    local n, other, took = out:match("^(%d+)\t(%S+)\t(%d+)")
    assert.equals("300", n, out)
    assert.equals("nil", other, out)
    -- 300 sockets cannot be open at once under this limit: several waves
    took = tonumber(took)
    assert.is_true(took >= 290 and took < 10000, "took " .. tostring(took) .. " ms")
  end)

  it("reports a host that does not resolve for the whole call", function()
    if not H.can_unshare() then
      pending("no network namespaces here (a lookup would leave the machine)")
      return
    end
    local out = H.lua_in_netns([[
      local tpu = require "tcp_port_used"
      print(tpu.check_many({ 80, 81 }, "nonexistent.invalid"))]])
    assert.matches("^nil\tresolve nonexistent.invalid: [^\t]+\tEAI_%u+", out)
  end)

  describe("mode bind", function()
    it("answers by bind probes", function()
      local free = H.free_port()
      local used, errs = tpu.check_many({ l.port, r.port, free }, "127.0.0.1", { mode = "bind" })
      assert.same({ [l.port] = true, [r.port] = true, [free] = false }, used)
      assert.same({}, errs)
    end)
    it("reports an address of another machine per port", function()
      local port = H.free_port()
      local used, errs, codes = tpu.check_many({ port }, "192.0.2.1", { mode = "bind" })
      assert.same({}, used)
      assert.equals("EADDRNOTAVAIL", codes[port])
      assert.matches("bind 192.0.2.1:" .. port, errs[port], 1, true)
    end)
  end)

  it("mode any: in use if either probe says so", function()
    local free = H.free_port()
    local used = tpu.check_many({ l.port, r.port, free }, "127.0.0.1", { mode = "any" })
    assert.same({ [l.port] = true, [r.port] = true, [free] = false }, used)
  end)

  it("leaves no file descriptor behind", function()
    local b = H.full_backlog()
    local before = H.fd_count()
    for _ = 1, 20 do
      tpu.check_many({ l.port, r.port, l.port }, nil, { close = "reset" })
      tpu.check_many(tpu.range(r.port, r.port), nil, { mode = "any" })
      l.drain()
    end
    tpu.check_many({ b.port, r.port, l.port }, "127.0.0.1", { timeout_ms = 20 })
    assert.equals(before, H.fd_count())
    b.close()
  end)

  it("raises on bad arguments, naming them", function()
    local function raises_in(f, pattern, ...)
      local args = { n = select("#", ...), ... }
      local ok, err = pcall(function()
        local res = f(unpack(args, 1, args.n))
        return res
      end)
      assert.is_false(ok)
      assert.matches(pattern, err, 1, true)
      -- the message points at the caller, not at the library
      assert.matches("many_spec.lua", err, 1, true)
    end
    local function raises(...) raises_in(tpu.check_many, ...) end
    raises("bad argument #1 to 'check_many' (ports[2] must be an integer in 1..65535, got 0)",
      { 80, 0 })
    raises("ports[1] must be an integer in 1..65535, got 80.5", { 80.5 })
    raises("ports[1] must be an integer in 1..65535, got \"80\"", { "80" })
    raises("ports[1] must be an integer in 1..65535, got nan", { 0 / 0 })
    raises("ports[1] must be an integer in 1..65535, got 65536", { 65536 })
    raises("bad argument #1 to 'check_many' (ports must be a non-empty list", {})
    raises("ports must be a non-empty list", nil)
    raises("bad argument #1 to 'check_many' (to must not be below from (20), got 10)",
      { from = 20, to = 10 })
    raises("bad argument #1 to 'check_many' (to must be an integer in 1..65535, got nil)",
      { from = 20 })
    raises("bad argument #2 to 'check_many' (host must be a string or nil, got 5)", { 80 }, 5)
    raises("host must not contain a NUL byte", { 80 }, "a\0b")
    raises("bad argument #3 to 'check_many' (unknown option 'timeout'", { 80 }, nil,
      { timeout = 5 })
    raises("bad argument #3 to 'check_many' (mode must be one of", { 80 }, nil, { mode = "x" })
    raises("timeout_ms must be a number of milliseconds in 0..1e12, got -1", { 80 }, nil,
      { timeout_ms = -1 })
    raises("max_inflight must be a positive integer, got 0", { 80 }, nil, { max_inflight = 0 })
    raises("opts must be a table or nil, got 5", { 80 }, nil, 5)
    raises_in(tpu.range, "bad argument #2 to 'range' (to must be an integer in 1..65535, got 70000)",
      1, 70000)
    raises_in(tpu.range, "bad argument #1 to 'range' (from must be an integer", nil, 5)
  end)
end)
