"""A blank IPv4 TCP/UDP checksum filled in (the frame of a guest that
offloaded it, for a receiver that cannot take it blank): Linux's
skb_checksum_help, the transport header found as netback's
checksum_setup_ipv4 finds it.  Every byte is the guest's: a frame whose
headers do not add up is refused (None), never read past its end."""
import struct

ETH_HLEN = 14
ETH_P_IP = b"\x08\x00"
IPPROTO_TCP, IPPROTO_UDP = 6, 17
CHECK_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}      # tcphdr.check, udphdr.check


def ones_complement_sum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def fill_checksum(frame):
    """frame with its TCP/UDP checksum computed, or None if it is no
    IPv4 TCP/UDP frame whose lengths fit (netback drops those)."""
    if frame[12:14] != ETH_P_IP or len(frame) < ETH_HLEN + 20:
        return None
    ihl = (frame[ETH_HLEN] & 0xF) * 4
    total = struct.unpack_from("!H", frame, ETH_HLEN + 2)[0]
    proto = frame[ETH_HLEN + 9]
    start, end = ETH_HLEN + ihl, ETH_HLEN + total
    if proto not in CHECK_OFFSET or ihl < 20 or end > len(frame) or \
            end - start < CHECK_OFFSET[proto] + 2:
        return None
    out = bytearray(frame)
    at = start + CHECK_OFFSET[proto]
    out[at:at + 2] = b"\0\0"
    pseudo = frame[ETH_HLEN + 12:ETH_HLEN + 20] + struct.pack("!BBH", 0, proto, end - start)
    check = ~ones_complement_sum(pseudo + bytes(out[start:end])) & 0xFFFF
    if proto == IPPROTO_UDP and check == 0:
        check = 0xFFFF                        # 0 means "no checksum" for UDP
    struct.pack_into("!H", out, at, check)
    return bytes(out)
