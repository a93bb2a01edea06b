module booted

go 1.26.0

require (
	github.com/magefile/mage v1.17.2
	github.com/pkg/sftp v1.13.12
	github.com/prometheus-community/pro-bing v0.9.1
	github.com/skeema/knownhosts v1.3.3
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/crypto v0.58.0
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.49.0
	modernc.org/libc v1.77.1
	modernc.org/sqlite v1.60.1
)
