/*
 * descriptor_set.h - the FileDescriptorSet of every .proto file strata-node serves.
 *
 * Generated at build time by `protoc --include_imports --descriptor_set_out` over proto/ and
 * embedded by proto/embed.cmake. The bytes are a serialized google.protobuf.FileDescriptorSet
 * (field 1: repeated FileDescriptorProto), used by server reflection. Read-only, static storage.
 */
#ifndef STRATA_PROTO_DESCRIPTOR_SET_H
#define STRATA_PROTO_DESCRIPTOR_SET_H

#include <stddef.h>

extern const unsigned char st_proto_descriptor_set[];
extern const size_t st_proto_descriptor_set_len;

#endif
