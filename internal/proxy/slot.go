package proxy

// NumSlots is the number of hash slots in a Redis Cluster.
const NumSlots = 16384

var crc16tab [256]uint16

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
		crc16tab[i] = crc
	}
}

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^c]
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
