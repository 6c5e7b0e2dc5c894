# FreeBSD appliance targets: cross builds, install, FreeBSD package. Included by Makefile.
PREFIX      ?= /usr/local
DESTDIR     ?=
# pkg(8) needs a version it can compare: 0.1.0.N where N counts the commits.
PKG_VERSION ?= 0.1.0.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
CROSS       := freebsd/amd64 freebsd/arm64 linux/amd64
# The one rc script: the port installs it with USE_RC_SUBR, install-files likewise.
RC_SCRIPT   := rc.d/redis_carp_proxy.in
# The port's DOCS option (on by default) installs README.md and docs/ here (PORTDOCS).
DOCSDIR     := $(PREFIX)/share/doc/redis-carp-proxy
# The binary looks for its configuration and pf files under PREFIX.
LDFLAGS     += -X github.com/redis-carp-proxy/redis-carp-proxy/internal/config.Prefix=$(PREFIX)

.PHONY: cross install install-files package

# Static binaries for every supported platform in build/GOOS-GOARCH/.
cross:
	@set -e; for p in $(CROSS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "build/$$os-$$arch/redis-carp-proxy"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o build/$$os-$$arch/redis-carp-proxy ./cmd/redis-carp-proxy; \
	done

# Installs the host build; `make install-files BIN=...` installs another binary.
install: build install-files

install-files:
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/etc/rc.d \
		$(DESTDIR)$(PREFIX)/etc/redis-carp-proxy $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/examples/redis-carp-proxy \
		$(DESTDIR)$(DOCSDIR)/docs
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/redis-carp-proxy
	sed 's|%%PREFIX%%|$(PREFIX)|g' $(RC_SCRIPT) > $(DESTDIR)$(PREFIX)/etc/rc.d/redis_carp_proxy
	chmod 0755 $(DESTDIR)$(PREFIX)/etc/rc.d/redis_carp_proxy
	install -m 0640 etc/redis-carp-proxy.conf.sample $(DESTDIR)$(PREFIX)/etc/redis-carp-proxy.conf.sample
	@# In a stage (DESTDIR) the package gives it the group; installed directly, the group
	@# the daemon runs as must exist (the package creates it: port/files/GIDs).
	@if [ -z "$(DESTDIR)" ]; then chgrp redis_carp_proxy $(PREFIX)/etc/redis-carp-proxy.conf.sample 2>/dev/null || \
		echo "install-files: no group redis_carp_proxy: create it (pw groupadd redis_carp_proxy -g 320; pw useradd redis_carp_proxy -u 320 -g 320 -d /nonexistent -s /usr/sbin/nologin), then chgrp redis_carp_proxy $(PREFIX)/etc/redis-carp-proxy.conf.sample" >&2; fi
	install -m 0644 etc/redis-carp-proxy.allow.list.sample $(DESTDIR)$(PREFIX)/etc/redis-carp-proxy/allow.list.sample
	install -m 0644 etc/redis-carp-proxy.pf.anchor.sample $(DESTDIR)$(PREFIX)/share/examples/redis-carp-proxy/pf.anchor
	gzip -9nc man/redis-carp-proxy.conf.5 > $(DESTDIR)$(PREFIX)/share/man/man5/redis-carp-proxy.conf.5.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man5/redis-carp-proxy.conf.5.gz
	gzip -9nc man/redis-carp-proxy.8 > $(DESTDIR)$(PREFIX)/share/man/man8/redis-carp-proxy.8.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man8/redis-carp-proxy.8.gz
	install -m 0644 README.md $(DESTDIR)$(DOCSDIR)/README.md
	install -m 0644 docs/*.md $(DESTDIR)$(DOCSDIR)/docs/

# FreeBSD packages (pkg add ./build/redis-carp-proxy-VERSION-freebsd-ARCH.pkg) of the
# cross-compiled binary; no ports tree needed.
package: cross
	@set -e; for arch in amd64 arm64; do \
		stage=build/stage-$$arch; rm -rf $$stage; \
		$(MAKE) --no-print-directory install-files DESTDIR=$$stage PREFIX=/usr/local BIN=build/freebsd-$$arch/redis-carp-proxy >/dev/null; \
		$(GO) run ./tools/mkpkg -stage $$stage -prefix /usr/local -arch $$arch -version $(PKG_VERSION) \
			-port port -o build/redis-carp-proxy-$(PKG_VERSION)-freebsd-$$arch.pkg; \
	done
