/*
 * proto_index.h - an index over a serialized google.protobuf.FileDescriptorSet, for server
 * reflection: files by name, the file declaring each fully qualified symbol, the services.
 *
 * The descriptor set is walked with a small protobuf wire reader (no descriptor.proto code is
 * generated); only the fields reflection needs are read:
 *   FileDescriptorSet   1 file (FileDescriptorProto)
 *   FileDescriptorProto 1 name, 2 package, 3 dependency, 4 message_type, 5 enum_type,
 *                       6 service, 7 extension
 *   DescriptorProto     1 name, 2 field, 3 nested_type, 4 enum_type, 6 extension, 8 oneof_decl
 *   EnumDescriptorProto 1 name, 2 value;  ServiceDescriptorProto 1 name, 2 method
 *   Field/Method/EnumValue/OneofDescriptorProto 1 name
 * Symbols are indexed by their full name without a leading dot: packages' messages (nested
 * too), their fields and oneofs, enums, enum values (in the enum's enclosing scope, as protobuf
 * scopes them), services, methods ("strata.v1.KV.Put") and extensions.
 *
 * Immutable once built: any number of threads may query it.
 */
#ifndef STRATA_NODE_PROTO_INDEX_H
#define STRATA_NODE_PROTO_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_proto_index st_proto_index;

/*
 * Index `set` (borrowed: it must outlive the index; the file bytes handed out point into it).
 * ST_CORRUPTION with the offset when the bytes do not parse as a FileDescriptorSet or a file
 * names a dependency the set does not hold.
 */
st_status st_proto_index_create(const uint8_t *set, size_t len, st_proto_index **out);
void st_proto_index_destroy(st_proto_index *idx); /* accepts NULL */

size_t st_proto_index_file_count(const st_proto_index *idx);
/* Name of file i ("strata/v1/kv.proto"); borrowed from the index. */
const char *st_proto_index_file_name(const st_proto_index *idx, size_t i);
/* The serialized FileDescriptorProto of file i; borrowed from `set`. */
st_slice st_proto_index_file_bytes(const st_proto_index *idx, size_t i);

/* Index of the file with this name, or -1. */
int st_proto_index_find_file(const st_proto_index *idx, const char *name);

/* Index of the file declaring this symbol (a leading '.' is allowed), or -1. */
int st_proto_index_find_symbol(const st_proto_index *idx, const char *symbol);

/* True if `name` is a message type of the set. */
bool st_proto_index_is_message(const st_proto_index *idx, const char *name);

/*
 * File i and everything it imports, transitively, each once, file i first: writes up to
 * `cap` indices to out and returns how many there are in all.
 */
size_t st_proto_index_closure(const st_proto_index *idx, size_t i, size_t *out, size_t cap);

/* Fully qualified names of every service, in file order; borrowed from the index. */
size_t st_proto_index_service_count(const st_proto_index *idx);
const char *st_proto_index_service(const st_proto_index *idx, size_t i);

#endif
