--- How a host argument is read, the same in every transport: brackets
-- around an IPv6 literal are dropped, and a host that can only be meant
-- as a literal (it has a colon, or only digits and dots) never reaches
-- DNS, so "999.1.1.1" or "1::2::3" fails at once with EAI_NONAME. The C
-- core applies the same rule (csrc/resolve.c, tpu_literal_like).
local M = {}

local find, match = string.find, string.match

--- The host without the brackets of "[::1]".
function M.bare(host)
  return match(host, "^%[(.*)%]$") or host
end

--- Whether the bare host can only be an address literal.
function M.literal_like(bare)
  return find(bare, ":", 1, true) ~= nil or not find(bare, "[^%d%.]")
end

--- Whether host (as given) is a name that goes through the resolver; such
-- hosts are named in messages ("db:5432 (10.0.0.2:5432)").
function M.is_name(host)
  return host ~= nil and not M.literal_like(M.bare(host))
end

return M
