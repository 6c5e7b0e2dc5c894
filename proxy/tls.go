package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ClientTLSConfig returns the server-side TLS configuration of the client listener
// (tls-cert-file, tls-key-file, and with tls-auth-clients the CA in tls-ca-cert-file).
func ClientTLSConfig(cfg *Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls-cert-file/tls-key-file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites}
	if cfg.TLSCACertFile != "" {
		pool, err := loadPool(cfg.TLSCACertFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls-ca-cert-file: %w", err)
		}
		tc.ClientCAs = pool
		if cfg.TLSAuthClients {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		} else {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return tc, nil
}

// backendTLSConfig returns the client-side TLS configuration for the cluster nodes, or nil
// when tls-cluster is off. The server name of each connection is set by the dialer.
func backendTLSConfig(cfg *Config) (*tls.Config, error) {
	if !cfg.TLSCluster {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites}
	if cfg.BackendTLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.BackendTLSCertFile, cfg.BackendTLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: backend-tls-cert-file/backend-tls-key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if cfg.BackendTLSCACertFile != "" {
		pool, err := loadPool(cfg.BackendTLSCACertFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: backend-tls-ca-cert-file: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// aeadSuites are the TLS 1.2 cipher suites offered and accepted: ECDHE with AES-GCM or
// ChaCha20-Poly1305 only, no CBC-SHA1 (TLS 1.3 suites are not configurable and are all
// AEAD).
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
