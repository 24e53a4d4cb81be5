# Thin aliases for the two README commands.
.PHONY: demo test
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
