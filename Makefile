# The two commands a newcomer needs (see README):
#   make run    install what is missing, build, and run the daemon with working defaults
#   make test   install what is missing, build, lint, typecheck and run the whole test suite
# Putting it on a node (docs/operators-guide.md, "Installing"):
#   make build && make install     PREFIX (/usr/local), DESTDIR, SYSCONFDIR (/etc), UNITDIR
#   make uninstall                 PURGE=1 also removes the configuration and /var/lib/capsa
#   make deb                       a Debian package in DEBDIR (/var/cache/capsa-deb), with its own Node (hack/deb.sh)
.PHONY: run test build install uninstall deb

PREFIX ?= /usr/local
DEBDIR ?= /var/cache/capsa-deb
export PREFIX DESTDIR SYSCONFDIR UNITDIR PURGE

run:
	bash hack/run.sh

test:
	bash hack/test.sh

build:
	bash hack/setup.sh

install:
	bash hack/install.sh install

uninstall:
	bash hack/install.sh uninstall

deb:
	bash hack/deb.sh $(DEBDIR)
