// Package config loads environment files (envs/NAME.yaml) into typed structs
// and validates them.
//
// Decoding rejects unknown fields, and Validate reports every problem at once,
// each with the file, the line and the field path, so that an operator can fix
// a file in one pass.
package config
