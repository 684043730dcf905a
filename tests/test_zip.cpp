// io/zip.h: members read back as written, stored or deflated, and every kind of damage refused
// with a message naming the archive.
#include <gtest/gtest.h>

#include "io/zip.h"
#include "kernels/common/error.h"
#include "tests/test_util.h"
#include "tests/zip_writer.h"

namespace iss {
namespace {

class Zip : public test::TempDirTest {
protected:
    std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
        test::write_bytes(path(name), bytes);
        return path(name);
    }
    std::string archive(const std::string& name, const std::vector<test::ZipEntry>& entries) {
        return write(name, test::zip_bytes(entries));
    }

    // The InputError's message of opening `file` and reading `member` from it ("" to only open).
    static std::string refusal(const std::string& file, const std::string& member = "") {
        return test::refusal_of(file, [&] {
            const ZipReader zip(file);
            if (!member.empty()) zip.read(member, 1 << 20);
        });
    }

    static std::vector<uint8_t> pattern(size_t n) {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = uint8_t((i * 7) % 13 + (i / 1000));
        return v;
    }
};

TEST_F(Zip, StoredAndDeflatedMembersReadBack) {
    const std::vector<uint8_t> text = test::from_text("{\"keras_version\": \"3.15.1\"}"), big = pattern(200000);
    test::ZipEntry deflated{"weights.bin", big};
    deflated.deflate = true;
    test::ZipEntry empty_deflated{"empty.deflated", {}};
    empty_deflated.deflate = true;
    const std::string file = archive("a.zip", {{"metadata.json", text}, deflated, {"empty", {}}, empty_deflated});
    ASSERT_TRUE(looks_like_zip(file));
    const ZipReader zip(file);
    ASSERT_EQ(zip.members().size(), 4u);
    EXPECT_EQ(zip.members()[1].name, "weights.bin");
    EXPECT_EQ(zip.members()[1].method, 8);
    EXPECT_LT(zip.members()[1].compressed_size, big.size() / 4);  // deflated for real
    EXPECT_EQ(zip.read("metadata.json", 100), text);
    EXPECT_EQ(zip.read("weights.bin", big.size()), big);
    EXPECT_TRUE(zip.read("empty", 0).empty());
    EXPECT_TRUE(zip.read("empty.deflated", 0).empty());
    EXPECT_EQ(zip.find("absent"), nullptr);
}

// write_zip: the members read back in order, stored, each dated 1980-01-01 (as Python's zipfile
// dates one written through ZipFile.open), as regular rw-r--r-- files; an archive of none is a
// valid empty one.
TEST_F(Zip, WrittenArchivesReadBackAsWritten) {
    const std::vector<ZipMember> members{
        {"metadata.json", test::from_text("{}")}, {"empty", {}}, {"model.weights.h5", pattern(70000)}};
    write_zip(path("w.zip"), members);
    ASSERT_TRUE(looks_like_zip(path("w.zip")));
    const ZipReader zip(path("w.zip"));
    ASSERT_EQ(zip.members().size(), members.size());
    for (size_t i = 0; i < members.size(); ++i) {
        SCOPED_TRACE(members[i].name);
        EXPECT_EQ(zip.members()[i].name, members[i].name);
        EXPECT_EQ(zip.members()[i].method, 0);
        EXPECT_EQ(zip.read(members[i].name, 1 << 20), members[i].data);  // its CRC checked
    }
    const std::vector<uint8_t> bytes = test::read_bytes(path("w.zip"));
    auto u16 = [&](size_t at) { return unsigned(bytes[at] | bytes[at + 1] << 8); };
    EXPECT_EQ(u16(12), 0x21u);  // the first local header's date: 1980-01-01
    const size_t end = bytes.size() - 22, directory = size_t(u16(end + 16) | u16(end + 18) << 16);
    EXPECT_EQ(u16(directory + 38) | u16(directory + 40) << 16, 0100644u << 16);  // external attributes
    write_zip(path("none.zip"), {});
    EXPECT_TRUE(ZipReader(path("none.zip")).members().empty());
}

// What other writers than Python's zipfile do: a streaming writer's data descriptors, extra
// fields in the local header alone, an archive comment (one that starts with an end record's
// signature, too short to be one).
TEST_F(Zip, OtherWritersArchivesReadBack) {
    const std::vector<uint8_t> big = pattern(70000);
    test::ZipEntry streamed{"streamed", big};
    streamed.deflate = true;
    streamed.data_descriptor = true;
    test::ZipEntry stored_streamed{"stored-streamed", test::from_text("config")};
    stored_streamed.data_descriptor = true;
    test::ZipEntry extra{"extra", big};
    extra.local_extra = {0x55, 0x54, 5, 0, 1, 2, 3, 4, 5};  // a timestamp field
    const std::string file =
        write("other.zip", test::zip_bytes({streamed, stored_streamed, extra}, std::string("PK\5\6 a comment", 14)));
    const ZipReader zip(file);
    ASSERT_EQ(zip.members().size(), 3u);
    EXPECT_EQ(zip.read("streamed", big.size()), big);
    EXPECT_EQ(zip.read("stored-streamed", 6), test::from_text("config"));
    EXPECT_EQ(zip.read("extra", big.size()), big);
}

TEST_F(Zip, AnEmptyArchiveHasNoMembers) {
    const std::string file = archive("empty.zip", {});
    ASSERT_TRUE(looks_like_zip(file));
    EXPECT_TRUE(ZipReader(file).members().empty());
    EXPECT_NE(refusal(file, "config.json").find("has no member config.json"), std::string::npos);
}

TEST_F(Zip, DamagedArchivesAreRefused) {
    const std::vector<uint8_t> big = pattern(5000);
    auto one = [&](const std::string& name, test::ZipEntry e) { return archive(name, {std::move(e)}); };
    auto entry = [&](bool deflate) {
        test::ZipEntry e{"m", big};
        e.deflate = deflate;
        return e;
    };
    test::ZipEntry e = entry(false);
    e.crc_xor = 1;
    EXPECT_NE(refusal(one("crc.zip", e), "m").find("member m: CRC-32 mismatch"), std::string::npos);
    e = entry(true);
    e.crc_xor = 0x80000000u;
    EXPECT_NE(refusal(one("crc-deflated.zip", e), "m").find("CRC-32 mismatch"), std::string::npos);
    e = entry(true);
    e.size_delta = -1;  // inflates to one byte more than recorded
    EXPECT_NE(refusal(one("longer.zip", e), "m").find("its deflated data is damaged"), std::string::npos);
    e = entry(true);
    e.size_delta = 1;
    EXPECT_NE(refusal(one("shorter.zip", e), "m").find("its deflated data is damaged"), std::string::npos);
    e = entry(true);
    e.size_delta = 900000;  // about 50 compressed bytes claiming 905,000
    EXPECT_NE(refusal(one("bomb.zip", e), "m").find("more than deflate gives"), std::string::npos);
    e = entry(false);
    e.flags = 1;
    EXPECT_NE(refusal(one("encrypted.zip", e), "m").find("member m is encrypted"), std::string::npos);
    e = entry(false);
    e.method = 12;
    EXPECT_NE(refusal(one("bzip2.zip", e), "m").find("compressed with method 12"), std::string::npos);
    const std::string bound = one("bound.zip", entry(false));
    EXPECT_NE(test::refusal_of(bound, [&] { ZipReader(bound).read("m", 4999); })
                  .find("holds 5000 bytes, more than the 4999 such a member may hold"),
              std::string::npos);
    EXPECT_NE(refusal(archive("twice.zip", {entry(false), entry(true)})).find("lists m twice"), std::string::npos);
    EXPECT_NE(
        refusal(archive("control.zip", {{"model\n.h5", big}})).find("an empty name or one with control characters"),
        std::string::npos);
    e = entry(false);
    e.size_delta = 3;  // a stored member recorded longer than its data
    EXPECT_NE(refusal(one("stored-size.zip", e), "m").find("its data runs past the archive's data"), std::string::npos);
    e = entry(true);
    e.method = 0;  // deflated bytes, recorded as stored
    EXPECT_NE(refusal(one("stored-deflated.zip", e), "m").find("is stored with 54 bytes for 5000"), std::string::npos);

    // Damage to the bytes themselves.
    const std::vector<uint8_t> good = test::zip_bytes({entry(false)});
    EXPECT_NE(refusal(write("cut.zip", {good.begin(), good.end() - 10})).find("no end of central directory record"),
              std::string::npos);
    EXPECT_NE(refusal(write("short.zip", {good.begin(), good.begin() + 10})).find("not a zip archive"),
              std::string::npos);
    EXPECT_NE(refusal(write("shifted.zip", {good.begin() + 5, good.end()})).find("does not end where"),
              std::string::npos);
    std::vector<uint8_t> zip64 = good;
    zip64[zip64.size() - 22 + 10] = zip64[zip64.size() - 22 + 11] = 0xff;  // entries: 0xffff
    EXPECT_NE(refusal(write("zip64.zip", zip64)).find("a zip64 archive"), std::string::npos);
    // A zip64 end record's locator before the end record, whose own fields are exact.
    std::vector<uint8_t> located(good.begin(), good.end() - 22);
    const std::vector<uint8_t> locator = {0x50, 0x4b, 0x06, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    located.insert(located.end(), locator.begin(), locator.end());
    located.insert(located.end(), good.end() - 22, good.end());
    EXPECT_NE(refusal(write("located.zip", located)).find("a zip64 archive"), std::string::npos);
    std::vector<uint8_t> no_local = good;
    no_local[0] = 'X';  // the local header's signature
    EXPECT_NE(refusal(write("no-local.zip", no_local), "m").find("no local header at byte 0"), std::string::npos);
    std::vector<uint8_t> past = good;
    const size_t central = good.size() - 22 - (46 + 1);
    past[central + 45] = 0x7f;  // the member's local header offset, past the data
    EXPECT_NE(refusal(write("past.zip", past)).find("starts past the archive's data"), std::string::npos);
    std::vector<uint8_t> renamed = good;
    renamed[30] = 'n';  // the local header's name
    EXPECT_NE(refusal(write("renamed.zip", renamed), "m").find("differs from the central directory"),
              std::string::npos);
    EXPECT_FALSE(looks_like_zip(write("text.zip", test::from_text("not an archive at all, but long enough"))));
    EXPECT_NE(refusal(path("text.zip")).find("no end of central directory record"), std::string::npos);
    EXPECT_NE(refusal(path("absent.zip")).find("absent.zip"), std::string::npos);
}

}  // namespace
}  // namespace iss
