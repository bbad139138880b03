using System.Text.Json;
using System.Text.Json.Serialization;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>The admission messages as contracts/schemas/admission-limit.v1.json and admission-lease.v1.json have them: camelCase, states as strings, optional fields left out when null.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AdmissionLimitChanged))]
[JsonSerializable(typeof(AdmissionLimitChanged[]))]
[JsonSerializable(typeof(AdmissionQuery))]
[JsonSerializable(typeof(AdmissionLeaseRenewal))]
[JsonSerializable(typeof(AdmissionLease[]))]
[JsonSerializable(typeof(AdmissionLease))]
internal sealed partial class AdmissionJson : JsonSerializerContext;
