# The two commands a newcomer needs (see README):
#   make run    install what is missing, build, and run the daemon with working defaults
#   make test   install what is missing, build, lint, typecheck and run the whole test suite
.PHONY: run test build

run:
	bash hack/run.sh

test:
	bash hack/test.sh

build:
	bash hack/setup.sh
