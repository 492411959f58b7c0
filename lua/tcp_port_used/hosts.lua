--- How a host argument is read, the same in every transport: brackets
-- around an IPv6 literal are dropped, and a host that can only be meant
-- as a literal (it has a colon, or every dot-separated part is a number,
-- decimal or 0x-hexadecimal) never reaches DNS. An IPv4 address is taken
-- only as written canonically, four decimal parts without leading zeros:
-- the legacy forms inet_aton reads ("127.0.0.010" in octal, "127.8",
-- "0x7f.0.0.8", "2130706440") would probe another address than the one a
-- reader sees (CVE-2021-29921), so they fail at once with EAI_NONAME, as
-- "999.1.1.1" and "1::2::3" do. The C core applies the same rule
-- (csrc/resolve.c, tpu_ipv4_like and tpu_ipv4_canonical).
local M = {}

local find, match, gmatch, tonumber = string.find, string.match, string.gmatch, tonumber

--- The host without the brackets of "[::1]".
function M.bare(host)
  return match(host, "^%[(.*)%]$") or host
end

-- Whether every dot-separated part of s (no colon) is empty, decimal
-- digits or 0x-hexadecimal: the forms inet_aton reads as a number.
local function ipv4_like(s)
  for part in gmatch(s .. ".", "([^.]*)%.") do
    if not (match(part, "^%d*$") or match(part, "^0[xX]%x*$")) then return false end
  end
  return true
end

--- Whether the bare host can only be an address literal.
function M.literal_like(bare)
  return find(bare, ":", 1, true) ~= nil or ipv4_like(bare)
end

--- Why the bare host, which reads as an IPv4 address, is not one as
-- written ("leading zero", "hexadecimal part", "2 parts, not 4", "part
-- above 255", "empty part"); nil for a canonical address and for any host
-- that does not read as IPv4 (names, IPv6 literals).
function M.not_canonical(bare)
  if find(bare, ":", 1, true) or not ipv4_like(bare) then return nil end
  local n, why, big = 0, nil, false
  for part in gmatch(bare .. ".", "([^.]*)%.") do
    n = n + 1
    if part == "" then
      why = why or "empty part"
    elseif match(part, "^0[xX]") then
      why = why or "hexadecimal part"
    elseif #part > 1 and match(part, "^0") then
      why = why or "leading zero"
    elseif tonumber(part) > 255 then
      big = true
    end
  end
  if why then return why end
  if n ~= 4 then return n .. (n == 1 and " part" or " parts") .. ", not 4" end
  if big then return "part above 255" end
  return nil
end

--- Whether host (as given) is a name that goes through the resolver; such
-- hosts are named in messages ("db:5432 (10.0.0.2:5432)").
function M.is_name(host)
  return host ~= nil and not M.literal_like(M.bare(host))
end

return M
