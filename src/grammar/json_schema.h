// JSON Schema (draft 4 to 2020-12, as found in practice) compiled to a grammar of compact
// JSON: no whitespace, object properties in the order the schema lists them (extra
// properties after), strings in canonical encoding (raw UTF-8; only ", \ and control
// characters escaped, the way JSON serialisers write them).
//
// Supported: type (and OpenAPI nullable), properties, required, additionalProperties,
// patternProperties (with additionalProperties false), items, prefixItems, additionalItems,
// minItems/maxItems, enum, const, $ref to local JSON pointers (recursion included), $defs and
// definitions, allOf (merged), anyOf, oneOf (as anyOf: the branches of real schemas are
// disjoint), minLength/maxLength, pattern (regex.h), the formats date-time, date, time, uuid,
// email, hostname, uri, uri-reference and ipv4, minimum/maximum and their exclusive forms
// (integer bounds for numbers). Every other validation keyword (not, if/then/else,
// uniqueItems, contains, propertyNames, dependencies, multipleOf, unevaluated*, non-trivial
// min/maxProperties, unsupported formats) is a CompileError that names it. Annotations
// (title, description, default, examples, ...) and unknown keywords are ignored, as
// validators ignore them.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "grammar/grammar.h"

namespace owl::grammar {

std::shared_ptr<const Grammar> compile_json_schema(const nlohmann::ordered_json& schema);
// The schema's value as an expression of another grammar (a reference to a new rule `name`),
// for grammars that embed JSON values (tool calls); the same errors as compile_json_schema.
ExprId add_json_schema(ExprPool& pool, const nlohmann::ordered_json& schema, const std::string& name);
// Parses `text` first: text that is not JSON is a CompileError with the byte offset.
std::shared_ptr<const Grammar> compile_json_schema_text(std::string_view text);
// The regular expression (regex.h) a string `format` is enforced with: date-time, date, time,
// uuid, email, hostname, uri, uri-reference, ipv4. nullopt for a format that is not standard
// (left free, as validators leave it); a CompileError for a standard one owl cannot enforce.
std::optional<std::string> format_regex(std::string_view format);
// Any JSON object (response_format json_object).
std::shared_ptr<const Grammar> json_object_grammar();

// Writes `value` as the grammar expects it: compact, with the properties of every object that
// the schema describes in the schema's order, the others after them in their own order.
std::string serialize_for_schema(const nlohmann::ordered_json& value, const nlohmann::ordered_json& schema);

}  // namespace owl::grammar
