#pragma once

// Typed values as bytes for one exchange between the ranks of one job (the same build on
// every rank: native byte order, no version). A struct lists its fields once, in a
// function template `fields(archive, value)` found by argument-dependent lookup, which
// Packer walks to write and Unpacker walks to read, so the two can never disagree:
//
//   template <typename A, typename S, base::if_is<S, Item> = 0>  // S: Item or const Item
//   void fields(A& a, S& s) { a(s.index, s.text, s.scores); }
//
// Numbers, enums, bool, strings, vectors and maps of these, and such structs nest freely.

#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace crsm::base {

template <typename S, typename T>
using if_is = std::enable_if_t<std::is_same_v<std::remove_const_t<S>, T>, int>;

namespace packed_detail {
template <typename T> struct is_vector : std::false_type {};
template <typename T, typename A> struct is_vector<std::vector<T, A>> : std::true_type {};
template <typename T> struct is_map : std::false_type {};
template <typename K, typename V, typename C, typename A> struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <typename T> struct is_pair : std::false_type {};
template <typename A, typename B> struct is_pair<std::pair<A, B>> : std::true_type {};
template <typename T> constexpr bool is_plain = std::is_arithmetic_v<T> || std::is_enum_v<T>;
}  // namespace packed_detail

class Packer {
 public:
  template <typename... T>
  void operator()(const T&... values) { (put(values), ...); }
  const std::string& bytes() const { return bytes_; }

 private:
  template <typename T>
  void put(const T& v) {
    using namespace packed_detail;
    if constexpr (is_plain<T>) {
      bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
    } else if constexpr (std::is_same_v<T, std::string>) {
      put(static_cast<uint64_t>(v.size()));
      bytes_.append(v);
    } else if constexpr (is_vector<T>::value || is_map<T>::value) {
      put(static_cast<uint64_t>(v.size()));
      for (const auto& e : v) put(e);
    } else if constexpr (is_pair<T>::value) {
      put(v.first), put(v.second);
    } else {
      fields(*this, v);
    }
  }
  std::string bytes_;
};

// Reads what a Packer wrote, in the same order. Running past the end, or bytes left over
// by finish(), is std::logic_error: the two sides disagree, which is a bug, not input.
class Unpacker {
 public:
  explicit Unpacker(const std::string& bytes) : bytes_(bytes) {}
  template <typename... T>
  void operator()(T&... values) { (get(values), ...); }
  void finish() const {
    if (at_ != bytes_.size()) throw std::logic_error("unpacked " + std::to_string(at_) + " of " + std::to_string(bytes_.size()) + " bytes");
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  template <typename T>
  void get(T& v) {
    using namespace packed_detail;
    if constexpr (is_plain<T>) {
      std::memcpy(&v, take(sizeof v), sizeof v);
    } else if constexpr (std::is_same_v<T, std::string>) {
      const uint64_t n = count();
      v.assign(take(n), n);
    } else if constexpr (is_vector<T>::value) {
      v.resize(count());
      for (auto& e : v) get(e);
    } else if constexpr (is_map<T>::value) {
      v.clear();
      for (uint64_t n = count(); n > 0; --n) {
        std::pair<typename T::key_type, typename T::mapped_type> e;
        get(e.first), get(e.second);
        v.emplace(std::move(e));
      }
    } else {
      fields(*this, v);
    }
  }
  uint64_t count() {
    uint64_t n = 0;
    get(n);
    if (n > bytes_.size() - at_) throw std::logic_error("unpacked a count of " + std::to_string(n) + " past the end");
    return n;
  }
  const char* take(size_t n) {
    if (n > bytes_.size() - at_) throw std::logic_error("unpacked past the end of " + std::to_string(bytes_.size()) + " bytes");
    const char* p = bytes_.data() + at_;
    at_ += n;
    return p;
  }
  const std::string& bytes_;
  size_t at_ = 0;
};

}  // namespace crsm::base
