package command

// NumSlots is the number of hash slots in a Redis Cluster.
const NumSlots = 16384

// crc16tab[k][x] is the CRC of byte x followed by k zero bytes (crc16tab[0] is the usual
// byte-at-a-time table). The CRC is linear, so four bytes fold in with four independent
// lookups instead of a chain of four dependent ones.
var crc16tab [4][256]uint16

func init() {
	// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
	for i := 0; i < 256; i++ {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		crc16tab[0][i] = crc
	}
	for k := 1; k < 4; k++ {
		for i := 0; i < 256; i++ {
			t := crc16tab[k-1][i]
			crc16tab[k][i] = t<<8 ^ crc16tab[0][t>>8]
		}
	}
}

func crc16(b []byte) uint16 {
	var crc uint16
	for len(b) >= 4 {
		crc = crc16tab[3][byte(crc>>8)^b[0]] ^ crc16tab[2][byte(crc)^b[1]] ^
			crc16tab[1][b[2]] ^ crc16tab[0][b[3]]
		b = b[4:]
	}
	for _, c := range b {
		crc = crc<<8 ^ crc16tab[0][byte(crc>>8)^c]
	}
	return crc
}

// KeySlot returns the hash slot of key, following Redis's hash tag rule: if the key
// contains a "{" followed later by a "}" with at least one byte between them, only the
// bytes between the first "{" and the first "}" after it are hashed.
func KeySlot(key []byte) int {
	for i, c := range key {
		if c == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j == i+1 {
						break // "{}": hash the whole key
					}
					return int(crc16(key[i+1:j]) & (NumSlots - 1))
				}
			}
			break
		}
	}
	return int(crc16(key) & (NumSlots - 1))
}

// KeysSlot returns the slot of the keys at positions idx of args (at least one), or
// cross when they span slots: the CROSSSLOT check of every path.
func KeysSlot(args [][]byte, idx []int) (slot int, cross bool) {
	slot = KeySlot(args[idx[0]])
	for _, i := range idx[1:] {
		if KeySlot(args[i]) != slot {
			return slot, true
		}
	}
	return slot, false
}
